"""Loading a checked Qwen3 checkpoint into a torch model, each at most once per process.

The checkpoint is recognised first (``qwen3_core.checkpoints``); after loading, transformers'
own report is checked again, so no weight the model uses is ever left randomly initialised.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qwen3_core.backends.options import Quantization, TransformersOptions
from qwen3_core.checkpoints import Checkpoint, open_folder
from qwen3_core.devices import resolve_device, resolve_dtype
from qwen3_core.hub import HubOptions, import_names, resolve_model_folder
from qwen3_core.kernels.int8 import check_int8_supported, quantize_int8
from qwen3_core.kernels.onednn_linear import onednn_linear_wanted, use_onednn_linears
from qwen3_core.tokenization import LiteralTokenizer
from qwen3_core.variants import ModelKind, ModelKindError, Variant


@dataclass(eq=False)
class LoadedModel:
    """A tokenizer and a model in eval mode on one device; shared by everyone who asks for it."""

    folder: Path
    kind: ModelKind
    device: torch.device
    dtype: torch.dtype
    tokenizer: LiteralTokenizer
    model: torch.nn.Module
    config: dict[str, Any] = field(default_factory=dict)
    quantization: Quantization | None = None
    variant: Variant | None = None

    @property
    def checkpoint(self) -> Checkpoint:
        assert self.variant is not None
        return Checkpoint(self.folder, self.kind, self.config, self.tokenizer, self.variant)


_cache: weakref.WeakValueDictionary[tuple[str, ...], LoadedModel] = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()
# One lock per name as asked for, then one per resolved folder: threads asking for one folder
# under different names ("m", "m/", "./m") must not load it twice either.
_key_locks: dict[tuple[str, ...], threading.Lock] = {}
_folder_locks: dict[tuple[str, ...], threading.Lock] = {}

_AUTO_CLASS = {
    "base": "AutoModel",
    "causal_lm": "AutoModelForCausalLM",
    "seq_cls": "AutoModelForSequenceClassification",
}


def _load(
    folder: Path,
    kind: ModelKind,
    device: torch.device,
    dtype: torch.dtype,
    quantization: Quantization | None,
    model_kwargs: Mapping[str, Any],
) -> LoadedModel:
    checkpoint = open_folder(folder, kind)
    variant = checkpoint.variant
    (loader,) = import_names("transformers", _AUTO_CLASS[variant.architecture])
    extra: dict[str, Any] = {"attn_implementation": "sdpa", **model_kwargs}
    if variant.architecture == "seq_cls":
        extra["num_labels"] = variant.num_labels
    if device.type == "cuda":
        extra["device_map"] = str(device)
    try:
        with _quiet_loading():
            model, report = loader.from_pretrained(
                str(folder),
                dtype=dtype,
                trust_remote_code=False,
                output_loading_info=True,
                **extra,
            )
    except (RuntimeError, ValueError, OSError) as exc:  # e.g. shapes that contradict config
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelKindError(f"'{folder}' could not be loaded: {reason[:300]}") from exc
    _check_loading_report(folder, report)
    model.to(device).eval().requires_grad_(False)
    if quantization == "int8":
        quantize_int8(model)
    elif _runs_onednn(device, dtype):
        use_onednn_linears(model)
    return LoadedModel(
        folder,
        kind,
        device,
        dtype,
        checkpoint.tokenizer,
        model,
        checkpoint.config,
        quantization,
        variant,
    )


def _drop_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


_quiet_lock = threading.Lock()
_quiet_depth = 0
_bars_were_enabled = True


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar and no load report on the user's terminal while a model
    loads: the engine checks transformers' report itself and raises on what matters. Nested
    and concurrent loads restore transformers' settings once the last one ends."""
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


def _runs_onednn(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32 and onednn_linear_wanted()


def load_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    device: torch.device,
    dtype: torch.dtype,
    quantization: Quantization | None = None,
    *,
    hub: HubOptions | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """The model for (model, kind, device, dtype, quantization, hub options, model_kwargs),
    loaded once per process and shared while anyone holds it; threads asking at the same
    moment wait for the one load. A quantized model is a copy of its own, never the float one
    changed in place."""
    hub = hub or HubOptions()
    kwargs = dict(model_kwargs or {})
    # A variant is a model object of its own: int8, or the oneDNN float32 linears, whose
    # switch can change between loads in one process.
    variant: tuple[str, ...] = ()
    if quantization is not None:
        variant = (quantization,)
    elif _runs_onednn(device, dtype):
        variant = ("onednn",)
    options = (*variant, repr(sorted(kwargs.items())))
    requested = (os.fspath(model), kind, str(device), str(dtype), *hub.key(), *options)
    with _cache_lock:
        hit = _cache.get(requested)
        if hit is not None:
            return hit
        lock = _key_locks.setdefault(requested, threading.Lock())
    with lock:
        with _cache_lock:
            hit = _cache.get(requested)
        if hit is not None:
            return hit
        folder = resolve_model_folder(model, hub)
        resolved = (str(folder.resolve()), kind, str(device), str(dtype), *options)
        with _cache_lock:
            folder_lock = _folder_locks.setdefault(resolved, threading.Lock())
        with folder_lock:  # always taken after a name's lock, never before: no deadlock
            with _cache_lock:
                hit = _cache.get(resolved)
            loaded = (
                hit if hit is not None else _load(folder, kind, device, dtype, quantization, kwargs)
            )
            with _cache_lock:
                _cache[resolved] = loaded
                _cache[requested] = loaded
        return loaded


def load_transformers_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    options: TransformersOptions,
    *,
    hub: HubOptions | None = None,
) -> LoadedModel:
    """``load_model`` for the transformers backend's options: the device and dtype resolved
    and checked, and int8's conditions checked before anything is read."""
    if options.quantization is not None and options.device is not None:
        _check_int8_device(str(options.device))  # before resolving: 'cuda' fails alike everywhere
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    if options.quantization is not None:
        _check_int8_device(str(device))
        if dtype != torch.float32:
            raise ValueError(
                f"quantization='int8' works from float32 weights, not {dtype}: pass "
                "dtype='float32' or leave dtype unset"
            )
        check_int8_supported()
    return load_model(
        model,
        kind,
        device,
        dtype,
        options.quantization,
        hub=hub,
        model_kwargs=options.model_kwargs,
    )


def _check_int8_device(device: str) -> None:
    if device.partition(":")[0].strip().lower() != "cpu":
        raise ValueError(
            f"quantization='int8' runs on CPU only, not on {device!r}: pass device='cpu' "
            "(on a GPU, bfloat16 is the fast path)"
        )
