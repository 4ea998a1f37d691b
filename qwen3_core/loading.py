"""Finding, checking and loading Qwen3 checkpoints, each at most once per process.

A model is a Hugging Face hub id or a local folder. Before any weights are read, the folder
is checked to be a Qwen3 checkpoint of the right kind: official Qwen3-Embedding checkpoints
name ``Qwen3ForCausalLM`` in config.json, so the kind is told from the tensor names instead
(flat ``layers.*`` for an embedding model, ``model.*`` plus an lm_head for a reranker).
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from qwen3_core.onednn_linear import onednn_linear_wanted, use_onednn_linears
from qwen3_core.quantization import Quantization, quantize_int8

ModelKind = Literal["embedding", "reranker"]

_TOKENIZER_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]
_WEIGHT_PATTERNS = [*_TOKENIZER_PATTERNS, "*.safetensors"]


_import_lock = threading.Lock()


def import_names(module: str, *names: str) -> tuple[Any, ...]:
    """``from module import names``, one thread at a time. transformers and huggingface_hub
    are lazy modules whose first import, made by several threads at the same moment, fails
    in all but one of them ("cannot import name 'AutoModel' from 'transformers'"): engines
    first built by many threads at once would fail without this lock."""
    with _import_lock:
        imported = importlib.import_module(module)
        return tuple(getattr(imported, name) for name in names)


class ModelNotFoundError(OSError):
    """The model folder does not exist, or the hub id could not be fetched."""


class ModelKindError(ValueError):
    """The folder holds something other than the Qwen3 model asked for."""


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or os.path.isabs(name)
    )


def resolve_model_folder(model: str | os.PathLike[str], *, weights: bool = True) -> Path:
    """A local folder as it is; a hub id downloaded (or found in the local hub cache), without
    its weights when ``weights`` is False (a client of a model server needs only the tokenizer
    and config)."""
    name = os.fspath(model)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a hub id or a folder path, got {model!r}")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"model path '{path}' is a file; expected a model folder")
        return path
    if _looks_like_path(name):
        raise ModelNotFoundError(f"model folder '{path}' does not exist")
    (snapshot_download,) = import_names("huggingface_hub", "snapshot_download")

    try:
        return Path(
            snapshot_download(
                repo_id=name, allow_patterns=_WEIGHT_PATTERNS if weights else _TOKENIZER_PATTERNS
            )
        )
    except Exception as exc:  # hub errors come in many types: report them all alike
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"model '{name}' is not a local folder and could not be fetched from the Hugging "
            f"Face Hub ({type(exc).__name__}: {reason[:200]})"
        ) from exc


def _tensor_names(folder: Path) -> list[str] | None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text())["weight_map"])
    single = folder / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as handle:
            return list(handle.keys())
    return None  # e.g. pytorch_model.bin only: the kind cannot be told without loading it


def checkpoint_kind(folder: Path) -> ModelKind | None:
    """``embedding`` (flat base-model tensors, no lm_head), ``reranker`` (a causal LM), or
    None when the tensor names do not say."""
    names = _tensor_names(folder)
    if not names:
        return None
    if any(n == "lm_head.weight" or n.startswith("model.") for n in names):
        return "reranker"
    if any(n.startswith("layers.") for n in names):
        return "embedding"
    return None


_WHAT_IT_IS = {
    "embedding": "a Qwen3 embedding model (base-model weights without an lm_head)",
    "reranker": "a Qwen3 reranker or causal LM (weights with an lm_head)",
}
_LOADER = {"embedding": "Qwen3Embedder", "reranker": "Qwen3Reranker"}


def check_model_folder(folder: Path, kind: ModelKind) -> dict[str, Any]:
    """Raise ModelKindError unless ``folder`` holds a Qwen3 checkpoint of ``kind``."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelKindError(
            f"'{folder}' has no config.json: it is not a Hugging Face model folder"
        )
    try:
        config: dict[str, Any] = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelKindError(f"'{config_path}' is not valid JSON: {exc}") from exc
    model_type = config.get("model_type")
    if model_type != "qwen3":
        raise ModelKindError(
            f"'{folder}' is not a Qwen3 model: its config.json says model_type={model_type!r} "
            f"(expected 'qwen3')"
        )
    found = checkpoint_kind(folder)
    if found is not None and found != kind:
        raise ModelKindError(
            f"'{folder}' looks like {_WHAT_IT_IS[found]}, not a Qwen3 {kind} model: "
            f"load it with {_LOADER[found]}"
        )
    return config


@dataclass(eq=False)
class Checkpoint:
    """A checked Qwen3 checkpoint folder with its config and tokenizer (no weights loaded)."""

    folder: Path
    kind: ModelKind
    config: dict[str, Any]
    tokenizer: Any


def _open_folder(folder: Path, kind: ModelKind) -> Checkpoint:
    (AutoTokenizer,) = import_names("transformers", "AutoTokenizer")

    config = check_model_folder(folder, kind)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelKindError(f"'{folder}' has no fast (tokenizer.json) tokenizer")
    return Checkpoint(folder, kind, config, tokenizer)


def open_checkpoint(
    model: str | os.PathLike[str], kind: ModelKind, *, weights: bool = True
) -> Checkpoint:
    """Find and check a checkpoint, for backends that load the weights themselves (vLLM) or
    that need none (a server client: ``weights=False``). Shared while anyone holds it: loading
    the 151k-token tokenizer takes seconds, and server clients are cheap to make otherwise."""
    folder = resolve_model_folder(model, weights=weights)
    key = (str(folder.resolve()), kind)
    with _checkpoints_lock:
        hit = _checkpoints.get(key)
    if hit is None:
        hit = _open_folder(folder, kind)
        with _checkpoints_lock:
            hit = _checkpoints.setdefault(key, hit)
    return hit


_checkpoints: weakref.WeakValueDictionary[tuple[str, str], Checkpoint] = (
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


_cache: weakref.WeakValueDictionary[tuple[str, ...], LoadedModel] = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()
# One lock per name as asked for, then one per resolved folder: threads asking for one folder
# under different names ("m", "m/", "./m") must not load it twice either.
_key_locks: dict[tuple[str, ...], threading.Lock] = {}
_folder_locks: dict[tuple[str, ...], threading.Lock] = {}


def _load(
    folder: Path,
    kind: ModelKind,
    device: torch.device,
    dtype: torch.dtype,
    quantization: Quantization | None = None,
) -> LoadedModel:
    AutoModel, AutoModelForCausalLM = import_names(
        "transformers", "AutoModel", "AutoModelForCausalLM"
    )

    checkpoint = _open_folder(folder, kind)
    loader = AutoModel if kind == "embedding" else AutoModelForCausalLM
    model: torch.nn.Module = loader.from_pretrained(
        str(folder),
        dtype=dtype,
        attn_implementation="sdpa",
        trust_remote_code=False,
        **({"device_map": str(device)} if device.type == "cuda" else {}),
    )
    model.to(device).eval().requires_grad_(False)
    if quantization == "int8":
        quantize_int8(model)
    elif _runs_onednn(device, dtype):
        use_onednn_linears(model)
    return LoadedModel(
        folder, kind, device, dtype, checkpoint.tokenizer, model, checkpoint.config, quantization
    )


def _runs_onednn(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.float32 and onednn_linear_wanted()


def load_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    device: torch.device,
    dtype: torch.dtype,
    quantization: Quantization | None = None,
) -> LoadedModel:
    """The model for (model, kind, device, dtype, quantization), loaded once per process and
    shared while anyone holds it; threads asking at the same moment wait for the one load.
    A quantized model is a copy of its own, never the float one changed in place."""
    # A variant is a model object of its own: int8, or the oneDNN float32 linears, whose
    # switch can change between loads in one process.
    variant: tuple[str, ...] = ()
    if quantization is not None:
        variant = (quantization,)
    elif _runs_onednn(device, dtype):
        variant = ("onednn",)
    requested = (os.fspath(model), kind, str(device), str(dtype), *variant)
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
        folder = resolve_model_folder(model)
        resolved = (str(folder.resolve()), kind, str(device), str(dtype), *variant)
        with _cache_lock:
            folder_lock = _folder_locks.setdefault(resolved, threading.Lock())
        with folder_lock:  # always taken after a name's lock, never before: no deadlock
            with _cache_lock:
                hit = _cache.get(resolved)
            loaded = hit if hit is not None else _load(folder, kind, device, dtype, quantization)
            with _cache_lock:
                _cache[resolved] = loaded
                _cache[requested] = loaded
        return loaded
