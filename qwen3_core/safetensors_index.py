"""Internal: which files hold a checkpoint's safetensors weights (one ``model.safetensors``,
or the shards its ``model.safetensors.index.json`` names). Torch-free; the one reader of the
shard index."""

from __future__ import annotations

from pathlib import Path

from qwen3_core.errors import ModelKindError
from qwen3_core.json_files import read_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def weight_map(folder: Path) -> dict[str, str] | None:
    """Each tensor's shard, as the folder's index names it; None when the folder has no
    index (one ``model.safetensors``, whose header names its tensors, or no weights).

    Raises:
        ModelKindError: The index is not JSON or has no weight map of names to files.
    """
    index = folder / INDEX_FILE
    if not index.is_file():
        return None
    found = read_json(index)
    mapping = found.get("weight_map") if isinstance(found, dict) else None
    if not isinstance(mapping, dict) or not all(
        isinstance(name, str) and isinstance(file, str) for name, file in mapping.items()
    ):
        raise ModelKindError(f"'{index}' has no weight_map")
    return mapping


def weight_files(folder: Path) -> list[str] | None:
    """The names of the folder's safetensors weight files, sorted, each once: the shards the
    index maps tensors to, else ``model.safetensors``; None when the folder has neither.

    Raises:
        ModelKindError: The index is not JSON or has no weight map.
    """
    mapping = weight_map(folder)
    if mapping is not None:
        return sorted(set(mapping.values()))
    if (folder / SINGLE_FILE).is_file():
        return [SINGLE_FILE]
    return None
