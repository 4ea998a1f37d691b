"""Internal: reading a model folder's JSON files, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen3_core.errors import ModelKindError


def read_json(path: Path) -> Any:
    """A JSON file of a model folder, failing as a ModelKindError that names the file.

    Args:
        path: The file.

    Returns:
        The parsed JSON value.

    Raises:
        ModelKindError: The file cannot be read or is not valid JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelKindError(f"'{path}' is not valid JSON: {exc}") from exc
    except RecursionError:  # nesting deeper than the interpreter's stack allows
        raise ModelKindError(f"'{path}' nests its JSON too deeply to be read") from None
