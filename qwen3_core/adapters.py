"""Framework-free helpers for the LangChain and LlamaIndex adapters (no model logic)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def device_name(value: Any) -> Any:
    """``torch.device("cuda:0")`` -> ``"cuda:0"``, so an adapter field stays a plain str."""
    return str(value) if isinstance(value, torch.device) else value


def dtype_name(value: Any) -> Any:
    """``torch.bfloat16`` -> ``"bfloat16"``: an adapter field stays a plain, serialisable str."""
    return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value


def reject_settings_beside_engine(clashing: Iterable[str], kind: str) -> None:
    """A ready engine already fixes its model and loading settings: a setting given as well
    would be silently ignored, so naming any (``clashing``) is an error."""
    names = sorted(set(clashing))
    if names:
        raise ValueError(
            f"engine= was given together with {', '.join(names)}: a ready {kind} already fixes "
            "its model and settings, so pass either engine= or those settings, not both"
        )
