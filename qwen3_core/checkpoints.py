"""Internal: opening a Qwen3 checkpoint without its weights: the folder, its config, the variant
it holds and its tokenizer. Torch-free, so a client of model servers needs no torch.

A model is a hub id (Hugging Face or ModelScope, see ``qwen3_core.hub``) or a local folder.
Before any weights are read, ``qwen3_core.variants`` recognises which checkpoint variant the
folder holds and refuses what cannot be scored exactly.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3_core import prompts
from qwen3_core.defaults import ModelKind
from qwen3_core.errors import ModelKindError
from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.json_files import read_json
from qwen3_core.sharing import SharedCache
from qwen3_core.tokenization import LiteralTokenizer
from qwen3_core.variants import Variant, read_config, recognise

_READ_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".safetensors")
"""The files of a model folder that the engine may read (those a hub download fetches)."""


@dataclass(frozen=True)
class FolderFiles:
    """The identity of the files a model folder held when it was read: each file's name,
    device, inode, size and modification time in nanoseconds.

    One ``stat`` per file, so it is cheap to compare on every engine construction. Weights
    saved into the folder again (``save_pretrained``, ``cp``) change the size or the
    modification time of the files written, or their inode where the writer replaces them.
    """

    folder: Path
    files: tuple[tuple[str, int, int, int, int], ...]

    @classmethod
    def of(cls, folder: Path) -> FolderFiles:
        """The files of ``folder`` now: those directly in it that the engine may read, and
        the configs of the sentence-transformers modules that ``modules.json`` names."""
        paths = [p for p in _listing(folder) if p.name.endswith(_READ_SUFFIXES)]
        modules = folder / "modules.json"
        try:
            listed = read_json(modules) if modules.is_file() else []
        except ValueError:
            listed = []  # recognising the variant reports it
        for module in listed if isinstance(listed, list) else ():
            sub = str(module.get("path", "")) if isinstance(module, dict) else ""
            if sub not in ("", "."):
                paths += [p for p in _listing(folder / sub) if p.name.endswith(".json")]
        files = []
        for path in sorted(paths):
            try:
                found = path.stat()  # follows links: a hub snapshot links to its blobs
            except OSError:
                continue
            name = str(path.relative_to(folder))
            files.append((name, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))
        return cls(folder, tuple(files))

    def changed(self) -> str | None:
        """The first file (as a path) that is not what it was, or that came or went; None
        when every file is as it was."""
        now = FolderFiles.of(self.folder)
        if now.files == self.files:
            return None
        before, after = dict(_by_name(self.files)), dict(_by_name(now.files))
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                return str(self.folder / name)
        return str(self.folder)  # not reached: the tuples differ in some name


def _listing(folder: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(folder) if entry.is_file()]
    except OSError:
        return []


def _by_name(
    files: tuple[tuple[str, int, int, int, int], ...],
) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(rest)) for name, *rest in files]


@dataclass(eq=False)
class Checkpoint:
    """A checked Qwen3 checkpoint folder with its config, variant and tokenizer (no weights
    loaded)."""

    folder: Path
    kind: ModelKind
    config: dict[str, Any]
    tokenizer: LiteralTokenizer
    variant: Variant
    files: FolderFiles | None = None
    """The folder's files as they were before anything was read from them."""

    def score_token_ids(self) -> tuple[int, int]:
        """A reranker's (yes, no) token ids, whose log-odds is its score: those the
        checkpoint names (a sentence-transformers cross-encoder), else the tokens "yes" and
        "no".

        Raises:
            ModelKindError: The checkpoint names an id outside its tokenizer.
            ValueError: The tokenizer does not encode "yes" and "no" as single tokens.
        """
        variant = self.variant
        if variant.yes_id is None or variant.no_id is None:
            yes = self.tokenizer.single_token_id(prompts.YES_TOKEN)
            no = self.tokenizer.single_token_id(prompts.NO_TOKEN)
            if yes is None or no is None:
                raise ValueError(
                    'the reranker tokenizer does not encode "yes" and "no" as single tokens: '
                    "this is not a Qwen3 reranker tokenizer"
                )
            return yes, no
        size = len(self.tokenizer)
        for name, value in (("true", variant.yes_id), ("false", variant.no_id)):
            if not 0 <= value < size:
                raise ModelKindError(
                    f"'{self.folder}' names {name}_token_id={value}, outside its "
                    f"tokenizer's {size} tokens"
                )
        return variant.yes_id, variant.no_id


def open_folder(folder: Path, kind: ModelKind, *, weights: bool = True) -> Checkpoint:
    """Check the checkpoint in ``folder`` (its weights' names and shapes too, unless
    ``weights`` is False) and read its tokenizer."""
    files = FolderFiles.of(folder)  # first: a change while it is read shows next time
    config = read_config(folder, kind)
    variant = recognise(folder, kind, weights=weights, config=config)
    return Checkpoint(folder, kind, config, _tokenizer(folder), variant, files)


def is_current(files: FolderFiles | None) -> bool:
    """Whether a folder read with these ``files`` still holds them, so that what was read
    from it (and shared) can be reused."""
    return files is None or files.changed() is None


_tokenizers: SharedCache[str, LiteralTokenizer] = SharedCache()


def _tokenizer(folder: Path) -> LiteralTokenizer:
    """The folder's tokenizer, shared with every folder whose tokenizer files are the same
    bytes (a model's variants and revisions): parsing the 151k-token Qwen3 tokenizer takes
    about a second."""
    digest = hashlib.sha256()
    for name in LiteralTokenizer.FILES:
        path = folder / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b"\0"))
    return _tokenizers.get_or_build(
        digest.hexdigest(), lambda: LiteralTokenizer.from_folder(folder)
    )


def _current(checkpoint: Checkpoint) -> bool:
    return is_current(checkpoint.files)


_checkpoints: SharedCache[tuple[str, ...], Checkpoint] = SharedCache(_current)


def open_checkpoint(
    model: str | os.PathLike[str],
    kind: ModelKind,
    *,
    weights: bool = True,
    hub: HubOptions | None = None,
) -> Checkpoint:
    """Find and check a checkpoint, for backends that load the weights themselves (vLLM) or
    that need none (a server client: ``weights=False``). Shared while anyone holds it and its
    folder's files are unchanged, so server clients are cheap to make."""
    folder = resolve_model_folder(model, hub, weights=weights)
    key = (str(folder.resolve()), kind, str(weights))
    return _checkpoints.get_or_build(key, lambda: open_folder(folder, kind, weights=weights))
