"""Internal: the two things a backend does; the engine classes do everything else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from qwen3_core.tokenization import RerankPrompt, TokenIds


class EmbeddingBackend(Protocol):
    """Runs the embedding model."""

    @property
    def hidden_size(self) -> int: ...

    def embed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        """The last position's hidden state of each sequence (or that state normalised):
        float32 (n, hidden_size), in input order."""
        ...

    def close(self) -> None:
        """Free the model; the backend is unusable afterwards."""
        ...


class RerankBackend(Protocol):
    """Runs the reranker."""

    def logits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        """The log-odds logit("yes") - logit("no") for each prompt: float32 (n,), in input
        order. The engine derives P(yes) as their sigmoid; a backend never returns P(yes),
        whose float32 value is 1.0 for every log-odds past about 17."""
        ...

    def close(self) -> None:
        """Free the model; the backend is unusable afterwards."""
        ...


@runtime_checkable
class AsyncEmbeddingBackend(EmbeddingBackend, Protocol):
    """An embedding backend that can also wait without a thread (a network client)."""

    async def aembed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        """``embed`` on the running event loop."""
        ...


@runtime_checkable
class AsyncRerankBackend(RerankBackend, Protocol):
    """A rerank backend that can also wait without a thread (a network client)."""

    async def alogits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        """``logits`` on the running event loop."""
        ...
