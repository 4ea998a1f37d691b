"""Internal: transformers' ``Qwen3Model`` loaded from a checkpoint folder, its loading report
checked, and transformers kept quiet on the user's terminal meanwhile."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from qwen3_core.errors import ModelKindError, first_line
from qwen3_core.hub import import_names


def transformers_decoder(
    folder: Path, device: torch.device, dtype: torch.dtype, model_kwargs: Mapping[str, Any]
) -> torch.nn.Module:
    """transformers' ``Qwen3Model``: only the base model is loaded, whatever the checkpoint's
    head (an lm_head or a classifier is left in the files)."""
    (loader,) = import_names("transformers", "AutoModel")
    extra: dict[str, Any] = {"attn_implementation": "sdpa", **model_kwargs}
    if device.type == "cuda":
        extra["device_map"] = str(device)
    try:
        with quiet_transformers():
            model, report = loader.from_pretrained(
                str(folder),
                dtype=dtype,
                trust_remote_code=False,
                output_loading_info=True,
                **extra,
            )
    except (RuntimeError, ValueError, OSError) as exc:  # e.g. shapes that contradict config
        reason = first_line(exc)
        raise ModelKindError(f"'{folder}' could not be loaded: {reason[:300]}") from exc
    _check_loading_report(folder, report)
    return ready_on(model, device)


def ready_on(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` moved to ``device`` in eval mode without gradients; on CPU with memory of
    its own for each tensor (``_own_copies``), so that the process holds one copy of the
    weights, not a copy beside the files' pages it read."""
    loaded: torch.nn.Module = model.to(device).eval().requires_grad_(False)
    if device.type == "cpu":
        _own_copies(loaded)
    return loaded


def _own_copies(model: torch.nn.Module) -> None:
    """Give each parameter and buffer memory of its own. transformers leaves them views of
    a mapping of the safetensors files, which would follow the files if they were rewritten
    in place (and end in SIGBUS where one was truncated). One tensor at a time; the mapping
    goes once the last view of it does."""
    for parameter in model.parameters():  # each once, so tied weights stay tied
        parameter.data = parameter.data.clone()
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            module._buffers[name] = buffer.clone()


def _drop_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


_quiet_lock = threading.Lock()
_quiet_depth = 0
_bars_were_enabled = True


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" or "Writing model shards" bar and no load report on the user's
    terminal while a model loads or is written: the engine checks transformers' report
    itself and raises on what matters. Nested and concurrent uses restore transformers'
    settings once the last one ends."""
    global _quiet_depth, _bars_were_enabled
    (logging_utils,) = import_names("transformers.utils", "logging")
    report_logger = logging.getLogger("transformers.modeling_utils")
    with _quiet_lock:
        if _quiet_depth == 0:
            _bars_were_enabled = logging_utils.is_progress_bar_enabled()
            logging_utils.disable_progress_bar()
            report_logger.addFilter(_drop_load_report)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                if _bars_were_enabled:
                    logging_utils.enable_progress_bar()
                report_logger.removeFilter(_drop_load_report)


def _check_loading_report(folder: Path, report: Mapping[str, Any]) -> None:
    """transformers only warns about weights it had to initialise at random: here that is an
    error naming them."""
    missing = sorted(report.get("missing_keys") or [])
    mismatched = [
        str(m[0]) if isinstance(m, tuple) else str(m) for m in report.get("mismatched_keys") or []
    ]
    if missing or mismatched:
        names = missing or mismatched
        what = "missing from" if missing else "of another shape in"
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ModelKindError(
            f"'{folder}': tensors the model needs are {what} the checkpoint ({shown}); they "
            "would be left randomly initialised"
        )
