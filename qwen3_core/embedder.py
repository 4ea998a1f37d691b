"""``Qwen3Embedder``: Qwen3-Embedding as a function from texts to unit vectors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from qwen3_core import prompts
from qwen3_core.backends import Backend, check_backend
from qwen3_core.backends.base import EmbeddingBackend
from qwen3_core.batching import unique_with_inverse
from qwen3_core.devices import resolve_device, resolve_dtype
from qwen3_core.loading import load_model
from qwen3_core.tokenization import EmbeddingTokenizer, LiteralTokenizer, Truncation
from qwen3_core.validation import check_int, check_optional_int, check_text, check_texts

logger = logging.getLogger("qwen3_core")


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


class Qwen3Embedder:
    """Embeds documents and instructed queries with a Qwen3-Embedding model.

    Last-token pooling, optional Matryoshka cut to ``dimensions``, L2 normalisation; queries
    are prefixed ``Instruct: {instruction}\\nQuery:`` and documents are embedded as they are.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = prompts.DEFAULT_EMBEDDING_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int = 8192,
        instruction: str = prompts.DEFAULT_INSTRUCTION,
        dimensions: int | None = None,
        max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
        backend: Backend = "transformers",
    ) -> None:
        self.instruction = check_text("instruction", instruction)
        self.max_length = check_int("max_length", max_length, minimum=2)
        check_optional_int("dimensions", dimensions, minimum=1)
        check_optional_int("max_batch_tokens", max_batch_tokens, minimum=1)
        check_backend(backend)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        loaded = load_model(model, "embedding", self.device, self.dtype)
        limit = loaded.config.get("max_position_embeddings")
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds the model's {limit} positions")
        self.model_path = loaded.folder
        self._tokenizer = EmbeddingTokenizer(LiteralTokenizer(loaded.tokenizer), self.max_length)
        from qwen3_core.backends.transformers import TransformersEmbeddingBackend

        self._backend: EmbeddingBackend = TransformersEmbeddingBackend(
            loaded, max_batch_tokens=max_batch_tokens, show_progress=show_progress
        )
        self.dimensions = check_optional_int(
            "dimensions", dimensions, minimum=1, maximum=self._backend.hidden_size
        )

    @property
    def dimension(self) -> int:
        """Length of the returned vectors."""
        return self.dimensions or self._backend.hidden_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimension), rows L2-normalised; texts are embedded as they are."""
        return self._embed(check_texts("texts", texts))

    def embed_queries(self, queries: Sequence[str], instruction: str | None = None) -> np.ndarray:
        """Like ``embed_documents``, each query as ``Instruct: {instruction}\\nQuery:{query}``
        (``instruction`` defaults to the one given at construction)."""
        checked = check_texts("queries", queries)
        task = self.instruction if instruction is None else check_text("instruction", instruction)
        return self._embed([prompts.embedding_query_text(task, q) for q in checked])

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        distinct, inverse = unique_with_inverse(texts)
        sequences, truncation = self._tokenizer.encode(distinct)
        warn_truncation(truncation, self.max_length, "distinct texts")
        states = self._backend.embed(sequences)[:, : self.dimension]
        check_finite(states, "embeddings")
        norms = np.linalg.norm(states, axis=1, keepdims=True)
        return np.asarray((states / np.maximum(norms, 1e-12))[inverse], dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"Qwen3Embedder({str(self.model_path)!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).removeprefix('torch.')!r}, dimension={self.dimension})"
        )
