"""Loading checked Qwen3 checkpoints, each at most once per process.

A model is a hub id (Hugging Face or ModelScope, see ``qwen3_core.hub``) or a local folder.
Before any weights are read, ``qwen3_core.variants`` recognises which checkpoint variant the
folder holds and refuses what cannot be scored exactly; after loading, transformers' own
report is checked again, so no weight the model uses is ever left randomly initialised.
"""

from __future__ import annotations

import hashlib
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

from qwen3_core.hub import HubOptions, ModelNotFoundError, import_names, resolve_model_folder
from qwen3_core.kernels.int8 import Quantization, quantize_int8
from qwen3_core.kernels.onednn_linear import onednn_linear_wanted, use_onednn_linears
from qwen3_core.variants import ModelKind, ModelKindError, Variant, read_config, recognise

__all__ = [
    "Checkpoint",
    "HubOptions",
    "LoadedModel",
    "ModelKind",
    "ModelKindError",
    "ModelNotFoundError",
    "import_names",
    "load_model",
    "open_checkpoint",
]

# Settings the engine owns: given in model_kwargs they would contradict it.
_OWNED_KWARGS = {
    "dtype": "dtype=",
    "torch_dtype": "dtype=",
    "device_map": "device=",
    "trust_remote_code": "nothing: remote code is never run",
    "num_labels": "nothing: the checkpoint says it",
    "output_loading_info": "nothing: the engine checks the loading report itself",
    "revision": "revision=",
    "token": "token=",
    "cache_dir": "cache_dir=",
    "local_files_only": "local_files_only=",
}


def check_model_kwargs(model_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``model_kwargs`` as a dict, refusing the keys that the engine's own arguments set."""
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
    for key in model_kwargs:
        if key in _OWNED_KWARGS:
            raise ValueError(f"model_kwargs may not set {key!r}: use {_OWNED_KWARGS[key]}")
    return dict(model_kwargs)


@dataclass(eq=False)
class Checkpoint:
    """A checked Qwen3 checkpoint folder with its config, variant and tokenizer (no weights
    loaded)."""

    folder: Path
    kind: ModelKind
    config: dict[str, Any]
    tokenizer: Any
    variant: Variant


def _open_folder(folder: Path, kind: ModelKind, *, weights: bool = True) -> Checkpoint:
    config = read_config(folder)
    variant = recognise(folder, kind, weights=weights, config=config)
    return Checkpoint(folder, kind, config, _tokenizer(folder), variant)


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
_tokenizers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_tokenizers_lock = threading.Lock()


def _tokenizer(folder: Path) -> Any:
    """The folder's fast tokenizer, shared with every folder whose tokenizer files are the
    same bytes (a model's variants and revisions): loading the 151k-token Qwen3 tokenizer
    takes seconds."""
    (AutoTokenizer,) = import_names("transformers", "AutoTokenizer")

    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        path = folder / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b"\0"))
    key = digest.hexdigest()
    with _tokenizers_lock:
        hit = _tokenizers.get(key)
    if hit is not None:
        return hit
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelKindError(f"'{folder}' has no fast (tokenizer.json) tokenizer")
    with _tokenizers_lock:
        return _tokenizers.setdefault(key, tokenizer)


def open_checkpoint(
    model: str | os.PathLike[str],
    kind: ModelKind,
    *,
    weights: bool = True,
    hub: HubOptions | None = None,
) -> Checkpoint:
    """Find and check a checkpoint, for backends that load the weights themselves (vLLM) or
    that need none (a server client: ``weights=False``). Shared while anyone holds it: loading
    the 151k-token tokenizer takes seconds, and server clients are cheap to make otherwise."""
    folder = resolve_model_folder(model, hub, weights=weights)
    key = (str(folder.resolve()), kind, str(weights))
    with _checkpoints_lock:
        hit = _checkpoints.get(key)
    if hit is None:
        hit = _open_folder(folder, kind, weights=weights)
        with _checkpoints_lock:
            hit = _checkpoints.setdefault(key, hit)
    return hit


_checkpoints: weakref.WeakValueDictionary[tuple[str, ...], Checkpoint] = (
    weakref.WeakValueDictionary()
)
_checkpoints_lock = threading.Lock()


@dataclass(eq=False)
class LoadedModel:
    """A tokenizer and a model in eval mode on one device; shared by everyone who asks for it."""

    folder: Path
    kind: ModelKind
    device: torch.device
    dtype: torch.dtype
    tokenizer: Any
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
    checkpoint = _open_folder(folder, kind)
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
    kwargs = check_model_kwargs(model_kwargs)
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
