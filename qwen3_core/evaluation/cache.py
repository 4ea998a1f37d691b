"""Corpus vectors kept between runs: one file per (model, embedding settings, corpus content).

A second evaluation of the same corpus with the same model reads the vectors back instead of
embedding every document again. The key holds everything the vectors depend on: the model's
files (their content hashes, so a re-downloaded or moved model still matches and a changed
one does not), the document prompt, the dimensions, the longest input, the backend and its
precision, and the corpus file's content hash. The query instruction is not part of it:
documents are embedded without it, so trying another instruction reuses the vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from qwen3_core.embedder import Qwen3Embedder

CACHE_FORMAT = 1
"""Bumped when the file layout or the way documents are built from records changes."""

_DIGESTS_FILE = "file-digests.json"
_CHUNK = 1 << 20


def default_cache_folder() -> Path:
    """Where corpus vectors are kept unless told otherwise.

    Returns:
        ``qwen3-rag/corpus-vectors`` in the user's cache folder (``$XDG_CACHE_HOME``, else
        ``~/.cache``).
    """
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "qwen3-rag" / "corpus-vectors"


class VectorCache:
    """A folder of corpus-vector files, each named by the hash of its key.

    Args:
        folder: Where the files are kept (made when the first one is written); None:
            ``default_cache_folder()``.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_folder()

    def key(self, embedder: Qwen3Embedder, corpus_sha256: str, documents: int) -> dict[str, Any]:
        """What the corpus vectors of ``embedder`` depend on.

        Args:
            embedder: The engine that embeds the corpus.
            corpus_sha256: The corpus file's content hash.
            documents: How many documents the corpus holds.

        Returns:
            The key, as JSON-ready data.
        """
        options = embedder.options
        return {
            "format": CACHE_FORMAT,
            "model_files": self.model_files(embedder.model_path),
            "document_prompt": embedder.document_prompt,
            "dimension": embedder.dimension,
            "max_length": embedder.max_length,
            "backend": embedder.backend,
            # The same weights in bfloat16 give other vectors than in float32.
            "dtype": getattr(options, "dtype", None),
            "quantization": getattr(options, "quantization", None),
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
        """The vectors stored for ``key``, or None when there are none (or the file is damaged:
        the vectors are then embedded again and the file rewritten).

        Args:
            key: A key from ``key``.

        Returns:
            float32 (documents, dimension), or None.
        """
        path = self.path(key)
        try:
            # Opened here, so that it is closed even when numpy cannot read it.
            with path.open("rb") as file, np.load(file, allow_pickle=False) as stored:
                if str(stored["key"]) != _canonical(key).decode():
                    return None
                vectors = np.asarray(stored["vectors"], dtype=np.float32)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if vectors.shape != (key["documents"], key["dimension"]):
            return None
        return vectors

    def save(self, key: dict[str, Any], vectors: np.ndarray) -> Path:
        """Store ``vectors`` for ``key``; written beside and renamed into place, so a reader
        never sees half a file.

        Args:
            key: A key from ``key``.
            vectors: float32 (documents, dimension).

        Returns:
            The file written.
        """
        path = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".tmp", delete=False) as file:
            try:
                np.savez(file, vectors=vectors, key=np.array(_canonical(key).decode()))
            except BaseException:
                os.unlink(file.name)
                raise
        os.replace(file.name, path)
        return path

    def model_files(self, folder: Path) -> dict[str, str]:
        """The SHA-256 of each file of a model folder (hidden files and ``*.md`` left out:
        they do not change the vectors). Hashes are remembered by path, size and modification
        time, so a large model is read in full only once.

        Args:
            folder: The model's folder.

        Returns:
            Each file's path inside the folder -> its SHA-256.
        """
        memo_path = self.folder / _DIGESTS_FILE
        memo = _read_memo(memo_path)
        digests: dict[str, str] = {}
        changed = False
        for file in _model_files(folder):
            stat = file.stat()
            where = str(file.resolve())
            known = memo.get(where)
            if isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime_ns]:
                digest = str(known[2])
            else:
                digest = _sha256(file)
                memo[where] = [stat.st_size, stat.st_mtime_ns, digest]
                changed = True
            digests[file.relative_to(folder).as_posix()] = digest
        if changed:
            _write_memo(memo_path, memo)
        return digests


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


def _canonical(key: dict[str, Any]) -> bytes:
    return json.dumps(key, sort_keys=True, ensure_ascii=True).encode()


def _read_memo(path: Path) -> dict[str, list[Any]]:
    try:
        memo = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write_memo(path: Path, memo: dict[str, list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8"
    ) as file:
        json.dump(memo, file)
    os.replace(file.name, path)
