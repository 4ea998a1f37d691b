"""``Qwen3Reranker``: Qwen3-Reranker's yes/no judgement as a relevance score P(yes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qwen3_core import prompts
from qwen3_core.backends import Backend, check_backend
from qwen3_core.backends.base import RerankBackend
from qwen3_core.batching import unique_with_inverse
from qwen3_core.devices import resolve_device, resolve_dtype
from qwen3_core.embedder import check_finite, warn_truncation
from qwen3_core.loading import load_model
from qwen3_core.tokenization import LiteralTokenizer, RerankTokenizer
from qwen3_core.validation import (
    check_int,
    check_optional_int,
    check_pairs,
    check_text,
    check_texts,
)


@dataclass(frozen=True)
class RerankResult:
    """One reranked document."""

    index: int
    """Position of the document in the input list."""
    score: float
    """P(yes): the model's probability that the document meets the query."""
    document: str
    """The document text."""


class Qwen3Reranker:
    """Scores (query, document) pairs with a Qwen3-Reranker model.

    The prompt is the official one (system turn, ``<Instruct>/<Query>/<Document>`` user turn,
    empty think block); the score is the softmax over the "no" and "yes" logits at the last
    position, P(yes) in [0, 1]. With ``share_prefix`` (the default) the tokens shared by one
    query's documents run once and their key/value cache is reused; scores are unchanged.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = prompts.DEFAULT_RERANKER_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int = 8192,
        instruction: str = prompts.DEFAULT_INSTRUCTION,
        max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
        share_prefix: bool = True,
        backend: Backend = "transformers",
    ) -> None:
        self.instruction = check_text("instruction", instruction)
        self.max_length = check_int("max_length", max_length, minimum=1)
        check_optional_int("max_batch_tokens", max_batch_tokens, minimum=1)
        check_backend(backend)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        loaded = load_model(model, "reranker", self.device, self.dtype)
        limit = loaded.config.get("max_position_embeddings")
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds the model's {limit} positions")
        self.model_path = loaded.folder
        self._tokenizer = RerankTokenizer(LiteralTokenizer(loaded.tokenizer), self.max_length)
        from qwen3_core.backends.transformers import TransformersRerankBackend

        self._backend: RerankBackend = TransformersRerankBackend(
            loaded,
            yes_id=self._tokenizer.yes_id,
            no_id=self._tokenizer.no_id,
            max_batch_tokens=max_batch_tokens,
            show_progress=show_progress,
            share_prefix=share_prefix,
        )

    def score(
        self, query: str, documents: Sequence[str], instruction: str | None = None
    ) -> np.ndarray:
        """P(yes) of each document for ``query``: float32 (len(documents),), input order."""
        check_text("query", query)
        docs = check_texts("documents", documents)
        return self._score([(query, d) for d in docs], instruction)

    def score_pairs(
        self, pairs: Sequence[tuple[str, str]], instruction: str | None = None
    ) -> np.ndarray:
        """P(yes) of each (query, document) pair: float32 (len(pairs),), input order."""
        return self._score(check_pairs("pairs", pairs), instruction)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """The documents best first (ties keep input order), at most ``top_n`` of them."""
        check_optional_int("top_n", top_n, minimum=0)
        scores = self.score(query, documents, instruction)
        order = np.argsort(-scores, kind="stable")[:top_n]
        return [RerankResult(int(i), float(scores[i]), documents[i]) for i in order]

    def _score(self, pairs: list[tuple[str, str]], instruction: str | None) -> np.ndarray:
        task = self.instruction if instruction is None else check_text("instruction", instruction)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        distinct, inverse = unique_with_inverse(pairs)
        prompts_, truncation = self._tokenizer.encode(distinct, task)
        warn_truncation(truncation, self.max_length, "distinct query-document pairs")
        scores = check_finite(self._backend.score(prompts_), "scores")
        return np.asarray(scores[inverse], dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"Qwen3Reranker({str(self.model_path)!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).removeprefix('torch.')!r})"
        )
