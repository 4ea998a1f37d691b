"""Internal: corpus vectors kept between runs: one file per (model, embedding settings, corpus
content).

A second evaluation of the same corpus with the same model reads the vectors back instead of
embedding every document again. The key holds everything the vectors depend on: the model's
files (their content hashes, read in full each run, so a re-downloaded or moved model still
matches and a changed one does not, whatever its size and modification time), the document
prompt, the dimensions, the longest input, the backend with the device type, precision,
decoder, kernels and free-form arguments it runs with, and the corpus file's content hash.
The query instruction is not part of it: documents are embedded without it, so trying
another instruction reuses the vectors.

Each file also holds the SHA-256 of the vectors written. A file that cannot be read, holds
another key, vectors of another shape or type, vectors that differ from what was written, or
values that are not finite is never used: the corpus is embedded again (one log line says
why) and the file rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder

CACHE_FORMAT = 2
"""Bumped when the file layout or the way documents are built from records changes."""

_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


def default_cache_folder() -> Path:
    """Where corpus vectors are kept unless told otherwise.

    Returns:
        ``qwen3-rag/corpus-vectors`` in the user's cache folder (``$XDG_CACHE_HOME``, else
        ``~/.cache``).
    """
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "qwen3-rag" / "corpus-vectors"


def check_cache_folder(folder: Path, name: str = "the cache folder") -> Path:
    """``folder``, if it is a folder or can be made one: it, or the first of its parents that
    exists, must be a folder (not a file such as ``/dev/null``).

    Args:
        folder: The cache folder.
        name: What to call it in the error.

    Returns:
        ``folder``.

    Raises:
        ValueError: ``folder`` or a parent of it is not a folder.
    """
    for place in (folder, *folder.parents):
        if not os.path.lexists(place):
            continue
        if place.is_dir():
            return folder
        if place == folder:
            raise ValueError(f"{name} '{folder}' is not a folder")
        raise ValueError(f"{name} '{folder}': '{place}' is not a folder")
    return folder


class VectorCache:
    """A folder of corpus-vector files, each named by the hash of its key.

    Args:
        folder: Where the files are kept (made when the first one is written); None:
            ``default_cache_folder()``.

    Raises:
        ValueError: ``folder`` or a parent of it is not a folder.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = check_cache_folder(
            Path(folder).expanduser() if folder is not None else default_cache_folder()
        )

    def key(
        self, embedder: Qwen3Embedder | Qwen3VLEmbedder, corpus_sha256: str, documents: int
    ) -> dict[str, Any]:
        """What the corpus vectors of ``embedder`` depend on.

        Args:
            embedder: The engine that embeds the corpus.
            corpus_sha256: The corpus file's content hash.
            documents: How many documents the corpus holds.

        Returns:
            The key, as JSON-ready data.
        """
        options = embedder.options
        device, dtype = embedder.device, embedder.dtype  # as the engine resolved them
        return {
            "format": CACHE_FORMAT,
            "model_files": self.model_files(embedder.model_path),
            # A Qwen3-VL embedder's document prompt is fixed (its model files tell it apart).
            "document_prompt": getattr(embedder, "document_prompt", None),
            "dimension": embedder.dimension,
            "max_length": embedder.max_length,
            "backend": embedder.backend,
            # The same weights on another device, in bfloat16 rather than float32, or through
            # another decoder or kernel give other vectors (from 1e-6 on).
            "device": None if device is None else device.type,
            "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
            **{name: _setting(getattr(options, name, None)) for name in _RESULT_SETTINGS},
            "corpus_sha256": corpus_sha256,
            "documents": documents,
        }

    def path(self, key: dict[str, Any]) -> Path:
        """The file that holds (or will hold) the vectors of ``key``.

        Args:
            key: A key from ``key``.

        Returns:
            ``<folder>/<hash of the key>.npz``.
        """
        return self.folder / f"{hashlib.sha256(_canonical(key)).hexdigest()[:32]}.npz"

    def load(self, key: dict[str, Any]) -> np.ndarray | None:
        """The vectors stored for ``key``, or None when there are none. A file that cannot be
        used (damaged, or not what was written: see the module) gives None too, with one
        warning: the vectors are then embedded again and the file rewritten.

        Args:
            key: A key from ``key``.

        Returns:
            float32 (documents, dimension), finite, or None.
        """
        path = self.path(key)
        if not path.is_file():  # nothing kept yet (or something else in its place)
            return None
        try:
            vectors, problem = _read(path, key)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            vectors, problem = None, f"it cannot be read: {exc}"
        if problem is not None:
            logger.warning(
                "The cached corpus vectors in %s are not used: %s. The corpus is embedded again.",
                path,
                problem,
            )
            return None
        return vectors

    def save(self, key: dict[str, Any], vectors: np.ndarray) -> Path:
        """Store ``vectors`` for ``key`` with their SHA-256; written beside and renamed into
        place, so a reader never sees half a file, and nothing is left behind when writing
        fails.

        Args:
            key: A key from ``key``.
            vectors: float32 (documents, dimension).

        Returns:
            The file written.

        Raises:
            OSError: The file could not be written.
        """
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        path = self.path(key)
        written: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.folder, prefix=".", suffix=".tmp", delete=False
            ) as file:
                written = file.name
                np.savez(
                    file,
                    vectors=vectors,
                    key=np.array(_canonical(key).decode()),
                    sha256=np.array(_vector_digest(vectors)),
                )
            os.replace(written, path)
        except BaseException:
            if written is not None:
                Path(written).unlink(missing_ok=True)
            raise
        return path

    def model_files(self, folder: Path) -> dict[str, str]:
        """The SHA-256 of each file of a model folder (hidden files and ``*.md`` left out:
        they do not change the vectors). Every file is read in full each time: a file
        changed in place keeps its size and may keep its modification time (hashing runs at
        roughly 0.5 to 2 GB/s: seconds for the 0.6B model's 1.2 GB).

        Args:
            folder: The model's folder.

        Returns:
            Each file's path inside the folder -> its SHA-256.
        """
        return {file.relative_to(folder).as_posix(): _sha256(file) for file in _model_files(folder)}


def _read(path: Path, key: dict[str, Any]) -> tuple[np.ndarray | None, str | None]:
    """The vectors of the file at ``path``, or None and what is wrong with it."""
    import numpy as np

    # Opened here, so that it is closed even when numpy cannot read it.
    with path.open("rb") as file, np.load(file, allow_pickle=False) as stored:
        if str(stored["key"]) != _canonical(key).decode():
            return None, "it holds the vectors of other settings"
        vectors = stored["vectors"]
        digest = str(stored["sha256"])
    expected = (key["documents"], key["dimension"])
    if vectors.dtype != np.float32 or vectors.shape != expected:
        return None, (
            f"it holds {vectors.dtype} vectors of shape {vectors.shape}, not float32 of shape "
            f"{expected}"
        )
    if _vector_digest(vectors) != digest:
        return None, "its vectors differ from those written (their SHA-256 does not match)"
    if not np.isfinite(vectors).all():
        return None, "some of its values are not finite (NaN or infinity)"
    return vectors, None


def _vector_digest(vectors: np.ndarray) -> str:
    """The SHA-256 of float32 vectors' bytes, in row order (about 1 s per 1 GB of vectors)."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(vectors, dtype="<f4").data).hexdigest()


def _model_files(folder: Path) -> Iterator[Path]:
    for file in sorted(folder.rglob("*")):
        parts = file.relative_to(folder).parts
        if any(part.startswith(".") for part in parts) or file.suffix == ".md":
            continue
        if file.is_file():
            yield file


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_RESULT_SETTINGS = (
    "quantization",
    "decoder",
    "cpu_linear",
    "int8_kernel",
    "model_kwargs",
    "config",
    "engine_args",
)
"""The backend options (as the engine resolved them) that change the vectors, the backends'
free-form arguments included; those that only change how fast they come (batch size,
progress) are left out."""


def _setting(value: Any) -> Any:
    if isinstance(value, Mapping):
        # By digest: the key is written into the file, and these may hold anything.
        text = repr(sorted((str(name), repr(item)) for name, item in value.items()))
        return hashlib.sha256(text.encode()).hexdigest() if value else None
    return value


def _canonical(key: dict[str, Any]) -> bytes:
    return json.dumps(key, sort_keys=True, ensure_ascii=True).encode()
