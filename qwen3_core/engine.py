"""Internal: what the two engine classes share: what they say about the opened model, output
checks, closing."""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from qwen3_core.backend_options import BackendName, BackendOptions
from qwen3_core.tokenization import Truncation
from qwen3_core.variants import Variant

if TYPE_CHECKING:  # torch is imported only by the local backends
    import torch

    from qwen3_core.backends.registry import OpenedModel

logger = logging.getLogger("qwen3_core")

B = TypeVar("B")


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
    backend: BackendName
    """The backend's name: ``"transformers"``, ``"openvino"``, ``"vllm"`` or ``"server"``."""
    options: BackendOptions
    """The backend's options, with the device and dtype it resolved."""
    device: torch.device | None
    """Where the model runs (None for a server client)."""
    dtype: torch.dtype | None
    """The model's dtype (None for a server client: the server decides)."""
    base_url: list[str] | None = None
    """The server addresses of ``backend='server'``."""
    model_path: Path
    """The checkpoint's folder (downloaded, for a hub id)."""
    variant: Variant
    """Which checkpoint variant the folder holds, and how it is scored."""

    def _placement(self) -> str:
        """Where the model runs, for ``repr``."""
        if self.base_url is not None:
            return f"base_url={self.base_url!r}"
        return f"device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')!r}"

    def _take(self, opened: OpenedModel) -> None:
        """Keep what the engines describe themselves with."""
        self.options = opened.options
        self.backend = opened.options.name
        self.device, self.dtype = opened.device, opened.dtype
        self._checkpoint = opened.checkpoint  # keeps the shared tokenizer cached
        self.model_path = opened.checkpoint.folder
        self.variant = opened.checkpoint.variant
        self.base_url = opened.base_url

    @property
    def loaded_model(self) -> Any:
        """The object that runs the model: the ``torch.nn.Module`` on the transformers
        backend (shared by engines on the same model, device and dtype), the ``vllm.LLM`` on
        vLLM, None for a client of servers."""
        return getattr(self._backend, "loaded_model", None)

    @property
    def max_batch_tokens(self) -> int | None:
        """Padded tokens per forward pass on the transformers backend (the device's default
        unless the options set it); None elsewhere."""
        budget: int | None = getattr(self._backend, "max_batch_tokens", None)
        return budget

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
