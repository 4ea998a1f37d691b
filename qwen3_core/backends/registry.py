"""Internal: which module runs each backend, and the one call that opens a model on it.

A backend is one module with ``open_model(model, kind, options, *, hub)``, which opens the
checkpoint for its options (``qwen3_core.backend_options``) and returns an ``OpenedModel``:
what the engine describes itself with, and what builds the runtime that embeds or scores
token ids. Adding a backend is that module, its options class, and its line in
``BACKEND_MODULES``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Protocol

from qwen3_core.backend_options import BackendName, BackendOptions
from qwen3_core.defaults import ModelKind
from qwen3_core.extras import Extra, install_command
from qwen3_core.hub import HubOptions

if TYPE_CHECKING:  # torch is imported only by the local backends
    import torch

    from qwen3_core.backends.base import EmbeddingBackend, RerankBackend
    from qwen3_core.checkpoints import Checkpoint

BACKEND_MODULES: dict[BackendName, str] = {
    "transformers": "qwen3_core.backends.transformers",
    "openvino": "qwen3_core.backends.openvino",
    "vllm": "qwen3_core.backends.vllm",
    "server": "qwen3_core.backends.server",
}
"""The module that runs each backend, imported only when a model is opened on it: vLLM's and
torch's imports are heavy, and a client of model servers needs neither."""

_IN_PROCESS: frozenset[BackendName] = frozenset({"transformers", "openvino", "vllm"})
"""The backends that run the model in this process, on torch."""


class OpenedModel(Protocol):
    """A model opened on its backend."""

    @property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint: folder, config, variant and tokenizer."""
        ...

    @property
    def options(self) -> BackendOptions:
        """The backend's options, with what it resolved (device, dtype)."""
        ...

    @property
    def device(self) -> torch.device | None:
        """Where the model runs; None for a client of servers."""
        ...

    @property
    def dtype(self) -> torch.dtype | None:
        """The model's dtype; None for a client of servers (the server decides)."""
        ...

    @property
    def base_url(self) -> list[str] | None:
        """The server addresses, for a client of servers; else None."""
        ...

    def embedding(self, model: str, *, max_length: int) -> EmbeddingBackend:
        """The runtime that embeds token ids (``model``: the name the user gave, under which
        a server serves it)."""
        ...

    def reranker(self, model: str, *, max_length: int, yes_id: int, no_id: int) -> RerankBackend:
        """The runtime that scores prompts: the log-odds of ``yes_id`` against ``no_id``."""
        ...


def open_model(
    model: str | os.PathLike[str],
    kind: ModelKind,
    options: BackendOptions,
    *,
    max_length: int,
    hub: HubOptions | None = None,
) -> OpenedModel:
    """Find, check and (in this process) load the model on ``options``' backend.

    Raises:
        ImportError: The backend's libraries are not installed.
        ValueError: ``max_length`` exceeds the model's positions, or a setting does not
            apply to ``kind``.
    """
    if options.name in _IN_PROCESS:
        require_torch(options.name)
    backend = importlib.import_module(BACKEND_MODULES[options.name])
    opened: OpenedModel = backend.open_model(model, kind, options, hub=hub or HubOptions())
    limit = opened.checkpoint.config.get("max_position_embeddings")
    if isinstance(limit, int) and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's {limit} positions")
    return opened


def require_torch(backend: BackendName) -> None:
    """An ImportError that says what to install when a backend in this process lacks torch."""
    try:
        import torch  # noqa: F401

        # Found, not imported: importing transformers costs a second, and CPU models run
        # without it (qwen3_core.decoder).
        if importlib.util.find_spec("transformers") is None:
            raise ImportError("No module named 'transformers'")
    except ImportError as exc:
        extra: Extra = "openvino" if backend == "openvino" else "torch"
        raise ImportError(
            f"backend={backend!r} runs the model in this process and needs torch and "
            f"transformers: {install_command(extra)} (a client of model servers, "
            "backend=ServerOptions(...), needs neither)"
        ) from exc
