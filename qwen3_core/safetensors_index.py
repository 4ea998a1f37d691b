"""Internal: which files hold a checkpoint's safetensors weights (one ``model.safetensors``,
or the shards its ``model.safetensors.index.json`` names). Torch-free."""

from __future__ import annotations

from pathlib import Path

from qwen3_core.errors import ModelKindError
from qwen3_core.json_files import read_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def weight_files(folder: Path) -> list[str] | None:
    """The names of the folder's safetensors weight files, sorted, each once: the shards the
    index maps tensors to, else ``model.safetensors``; None when the folder has neither.

    Raises:
        ModelKindError: The index is not JSON or has no weight map.
    """
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = read_json(index)
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(name, str) for name in weight_map.values()
        ):
            raise ModelKindError(f"'{index}' has no weight_map")
        return sorted(set(weight_map.values()))
    if (folder / SINGLE_FILE).is_file():
        return [SINGLE_FILE]
    return None
