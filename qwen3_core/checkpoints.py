"""Opening a Qwen3 checkpoint without its weights: the folder, its config, the variant it
holds and its tokenizer. Torch-free, so a client of model servers needs no torch.

A model is a hub id (Hugging Face or ModelScope, see ``qwen3_core.hub``) or a local folder.
Before any weights are read, ``qwen3_core.variants`` recognises which checkpoint variant the
folder holds and refuses what cannot be scored exactly.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3_core.hub import HubOptions, resolve_model_folder
from qwen3_core.tokenization import LiteralTokenizer
from qwen3_core.variants import ModelKind, Variant, read_config, recognise


@dataclass(eq=False)
class Checkpoint:
    """A checked Qwen3 checkpoint folder with its config, variant and tokenizer (no weights
    loaded)."""

    folder: Path
    kind: ModelKind
    config: dict[str, Any]
    tokenizer: LiteralTokenizer
    variant: Variant


def open_folder(folder: Path, kind: ModelKind, *, weights: bool = True) -> Checkpoint:
    """Check the checkpoint in ``folder`` (its weights' names and shapes too, unless
    ``weights`` is False) and read its tokenizer."""
    config = read_config(folder)
    variant = recognise(folder, kind, weights=weights, config=config)
    return Checkpoint(folder, kind, config, _tokenizer(folder), variant)


_tokenizers: weakref.WeakValueDictionary[str, LiteralTokenizer] = weakref.WeakValueDictionary()
_tokenizers_lock = threading.Lock()


def _tokenizer(folder: Path) -> LiteralTokenizer:
    """The folder's tokenizer, shared with every folder whose tokenizer files are the same
    bytes (a model's variants and revisions): parsing the 151k-token Qwen3 tokenizer takes
    about a second."""
    digest = hashlib.sha256()
    for name in LiteralTokenizer.FILES:
        path = folder / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b"\0"))
    key = digest.hexdigest()
    with _tokenizers_lock:
        hit = _tokenizers.get(key)
    if hit is not None:
        return hit
    tokenizer = LiteralTokenizer.from_folder(folder)
    with _tokenizers_lock:
        return _tokenizers.setdefault(key, tokenizer)


_checkpoints: weakref.WeakValueDictionary[tuple[str, ...], Checkpoint] = (
    weakref.WeakValueDictionary()
)
_checkpoints_lock = threading.Lock()


def open_checkpoint(
    model: str | os.PathLike[str],
    kind: ModelKind,
    *,
    weights: bool = True,
    hub: HubOptions | None = None,
) -> Checkpoint:
    """Find and check a checkpoint, for backends that load the weights themselves (vLLM) or
    that need none (a server client: ``weights=False``). Shared while anyone holds it, so
    server clients are cheap to make."""
    folder = resolve_model_folder(model, hub, weights=weights)
    key = (str(folder.resolve()), kind, str(weights))
    with _checkpoints_lock:
        hit = _checkpoints.get(key)
    if hit is None:
        hit = open_folder(folder, kind, weights=weights)
        with _checkpoints_lock:
            hit = _checkpoints.setdefault(key, hit)
    return hit
