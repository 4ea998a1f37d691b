"""What the two engine classes share: opening a model on a backend, output checks, closing."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from qwen3_core.backends import Backend, check_backend
from qwen3_core.backends.http import ServerPool
from qwen3_core.devices import resolve_device, resolve_dtype
from qwen3_core.hub import HubOptions
from qwen3_core.kernels.int8 import Quantization, check_int8_supported
from qwen3_core.loading import (
    Checkpoint,
    LoadedModel,
    ModelKind,
    check_model_kwargs,
    load_model,
    open_checkpoint,
)
from qwen3_core.tokenization import Truncation
from qwen3_core.validation import check_int

logger = logging.getLogger("qwen3_core")

B = TypeVar("B")


@dataclass
class Opened:
    """A model opened for a backend: its checkpoint, and the torch model if transformers."""

    checkpoint: Checkpoint
    loaded: LoadedModel | None
    device: torch.device
    dtype: torch.dtype


def open_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    *,
    backend: Backend,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    max_length: int,
    quantization: Quantization | None = None,
    hub: HubOptions | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Opened:
    check_backend(backend)
    kwargs = check_model_kwargs(model_kwargs)
    if kwargs and backend != "transformers":
        raise ValueError(
            f"model_kwargs= is passed to transformers' from_pretrained, which backend="
            f"{backend!r} does not use"
            + (": give vLLM its own arguments in vllm_kwargs=" if backend == "vllm" else "")
        )
    if quantization is not None and quantization != "int8":
        raise ValueError(f"unknown quantization {quantization!r}: use None or 'int8'")
    if quantization is not None and backend != "transformers":
        raise ValueError(
            f"quantization='int8' is for backend='transformers' on CPU, not {backend!r} "
            "(vLLM and its servers quantize through their own options)"
        )
    if backend == "vllm" and device is not None:
        raise ValueError(
            "device= is not used with backend='vllm': vLLM places the model itself "
            "(choose GPUs with CUDA_VISIBLE_DEVICES and tensor_parallel_size)"
        )
    if backend == "server" and (device is not None or dtype is not None):
        raise ValueError(
            "device= and dtype= are not used with backend='server': the server's own flags "
            "(--dtype, --tensor-parallel-size) decide them"
        )
    if quantization is not None and device is not None:
        _check_int8_device(str(device))  # before resolving, so 'cuda' fails alike everywhere
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    if quantization is not None:
        _check_int8_device(str(resolved_device))
        if resolved_dtype != torch.float32:
            raise ValueError(
                f"quantization='int8' works from float32 weights, not {resolved_dtype}: pass "
                "dtype='float32' or leave dtype unset"
            )
        check_int8_supported()
    loaded: LoadedModel | None = None
    if backend == "transformers":
        loaded = load_model(
            model,
            kind,
            resolved_device,
            resolved_dtype,
            quantization,
            hub=hub,
            model_kwargs=kwargs,
        )
        checkpoint = loaded.checkpoint
    else:
        # vLLM reads the weights itself; a server client needs only tokenizer and config.
        checkpoint = open_checkpoint(model, kind, weights=backend == "vllm", hub=hub)
    limit = checkpoint.config.get("max_position_embeddings")
    if isinstance(limit, int) and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's {limit} positions")
    return Opened(checkpoint, loaded, resolved_device, resolved_dtype)


def _check_int8_device(device: str) -> None:
    if device.partition(":")[0].strip().lower() != "cpu":
        raise ValueError(
            f"quantization='int8' runs on CPU only, not on {device!r}: pass device='cpu' "
            "(on a GPU, bfloat16 is the fast path)"
        )


def vllm_options(
    tensor_parallel_size: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    vllm_kwargs: Mapping[str, Any] | None,
) -> Any:
    from qwen3_core.backends.vllm import VllmOptions

    return VllmOptions(
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        extra=dict(vllm_kwargs or {}),
    )


def server_pool(
    backend: Backend,
    base_url: str | Sequence[str] | None,
    api_key: str | None,
    timeout: float,
    max_concurrency: int,
    max_retries: int,
) -> ServerPool | None:
    """The connections of ``backend='server'``; for the other backends, None, after checking
    that no server setting was given to them (it would be silently ignored)."""
    if backend != "server":
        if base_url is not None or api_key is not None:
            raise ValueError(f"base_url= and api_key= apply to backend='server', not {backend!r}")
        return None
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return ServerPool(
        base_url,
        api_key=api_key,
        timeout=float(timeout),
        max_concurrency=check_int("max_concurrency", max_concurrency, minimum=1),
        max_retries=check_int("max_retries", max_retries, minimum=0),
    )


def warn_truncation(truncation: Truncation, max_length: int, what: str) -> None:
    """One warning per call that cut anything."""
    if truncation.truncated:
        logger.warning(
            "%d of %d %s exceeded max_length=%d tokens and were truncated (their first tokens "
            "were kept)",
            truncation.truncated,
            truncation.total,
            what,
            max_length,
        )


def check_finite(values: np.ndarray, what: str) -> np.ndarray:
    """Model output must be finite: NaN or inf (float16 overflow, broken weights) would give a
    silently wrong ranking, so it is an error."""
    if not np.isfinite(values).all():
        rows = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
        raise FloatingPointError(
            f"the model produced NaN or inf {what} for input(s) {rows[:10].tolist()}; "
            "float16 can overflow: use dtype='float32' or 'bfloat16'"
        )
    return values


class EngineBase(Generic[B]):
    """Closing and use as a context manager, for an engine around a backend of type B."""

    _backend_or_none: B | None
    backend: Backend
    device: torch.device
    dtype: torch.dtype
    base_url: list[str] | None = None
    """The server addresses of ``backend='server'``."""

    def _placement(self) -> str:
        """Where the model runs, for ``repr``."""
        if self.base_url is not None:
            return f"base_url={self.base_url!r}"
        return f"device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')!r}"

    @property
    def _backend(self) -> B:
        backend = self._backend_or_none
        if backend is None:
            raise RuntimeError(f"this {type(self).__name__} is closed")
        return backend

    def close(self) -> None:
        """Free the model (for vLLM: the engine and its GPU memory). Idempotent; the
        instance cannot be used afterwards."""
        backend, self._backend_or_none = self._backend_or_none, None
        if backend is not None:
            backend.close()  # type: ignore[attr-defined]

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
