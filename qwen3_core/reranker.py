"""``Qwen3Reranker``: Qwen3-Reranker's yes/no judgement as a relevance score P(yes)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qwen3_core import prompts
from qwen3_core.backends import Backend
from qwen3_core.backends.base import AsyncRerankBackend, RerankBackend
from qwen3_core.batching import unique_with_inverse
from qwen3_core.engine import (
    EngineBase,
    check_finite,
    open_model,
    server_pool,
    vllm_options,
    warn_truncation,
)
from qwen3_core.hub import HubOptions, ModelSource
from qwen3_core.kernels.int8 import Quantization
from qwen3_core.tokenization import LiteralTokenizer, RerankPrompt, RerankTokenizer
from qwen3_core.validation import (
    check_int,
    check_optional_int,
    check_pairs,
    check_text,
    check_texts,
)
from qwen3_core.variants import ModelKindError


@dataclass(frozen=True)
class RerankResult:
    """One reranked document."""

    index: int
    """Position of the document in the input list."""
    score: float
    """P(yes): the model's probability that the document meets the query."""
    document: str
    """The document text."""


class Qwen3Reranker(EngineBase[RerankBackend]):
    """Scores (query, document) pairs with a Qwen3-Reranker model.

    The prompt is the official one (system turn, ``<Instruct>/<Query>/<Document>`` user turn,
    empty think block); the score is the softmax over the "no" and "yes" logits at the last
    position, P(yes) in [0, 1]. With ``share_prefix`` (the default) the tokens shared by one
    query's documents run once and their key/value cache is reused; scores are unchanged.
    ``backend="vllm"`` runs the model on vLLM (``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len`` and ``vllm_kwargs`` apply to it only; vLLM
    shares prefixes through its own prefix cache); ``backend="server"`` sends the prompts'
    token ids to vLLM servers at ``base_url`` (one address or a list, used round-robin;
    ``api_key``, ``timeout`` in seconds, ``max_concurrency`` requests in flight,
    ``max_retries``; see docs/serving.md). The ``a``-methods are the async forms: on the server
    backend they wait on the network without a thread.
    ``quantization="int8"`` (CPU, transformers backend, float32 only; off by default) runs the
    decoder's linear layers in int8 on the CPU's VNNI units: faster, not exact (see
    docs/performance.md).
    For a hub id, ``revision``, ``token``, ``cache_dir`` and ``local_files_only`` go to the
    download, and ``source="modelscope"`` (or QWEN3_RAG_USE_MODELSCOPE=1) fetches from
    ModelScope; ``model_kwargs`` go to transformers' ``from_pretrained``. Every checkpoint
    variant in circulation loads and scores exactly, and one that cannot is refused with a
    ``ModelKindError`` before any weights are read (see docs/engine.md).
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
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.8,
        max_model_len: int | None = None,
        vllm_kwargs: Mapping[str, Any] | None = None,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        max_retries: int = 5,
        quantization: Quantization | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        source: ModelSource | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._backend_or_none = None
        self.instruction = check_text("instruction", instruction)
        self.max_length = check_int("max_length", max_length, minimum=1)
        check_optional_int("max_batch_tokens", max_batch_tokens, minimum=1)
        pool = server_pool(backend, base_url, api_key, timeout, max_concurrency, max_retries)
        opened = open_model(
            model,
            "reranker",
            backend=backend,
            device=device,
            dtype=dtype,
            max_length=max_length,
            quantization=quantization,
            hub=HubOptions(revision, token, cache_dir, local_files_only, source),
            model_kwargs=model_kwargs,
        )
        self.device, self.dtype = opened.device, opened.dtype
        self._checkpoint = opened.checkpoint  # keeps the shared tokenizer cached
        self.model_path = opened.checkpoint.folder
        self.backend = backend
        self.base_url = None if pool is None else pool.urls
        self.max_batch_tokens = max_batch_tokens
        self._tokenizer = RerankTokenizer(
            LiteralTokenizer.of(opened.checkpoint.tokenizer), self.max_length
        )
        self.variant = opened.checkpoint.variant
        yes_id, no_id = self._score_token_ids(opened.checkpoint.tokenizer)
        if opened.loaded is not None:
            from qwen3_core.backends.transformers import TransformersRerankBackend

            self._backend_or_none = TransformersRerankBackend(
                opened.loaded,
                yes_id=yes_id,
                no_id=no_id,
                max_batch_tokens=max_batch_tokens,
                show_progress=show_progress,
                share_prefix=share_prefix,
            )
        elif pool is not None:
            from qwen3_core.backends.server import ServerRerankBackend

            self._backend_or_none = ServerRerankBackend(pool, os.fspath(model), self.variant)
        else:
            from qwen3_core.backends.vllm import VllmRerankBackend

            self._backend_or_none = VllmRerankBackend(
                opened.checkpoint.folder,
                dtype=self.dtype,
                max_length=self.max_length,
                options=vllm_options(
                    tensor_parallel_size, gpu_memory_utilization, max_model_len, vllm_kwargs
                ),
                variant=self.variant,
                score_tokens=tuple(
                    opened.checkpoint.tokenizer.convert_ids_to_tokens([no_id, yes_id])
                ),
            )

    def _score_token_ids(self, tokenizer: Any) -> tuple[int, int]:
        """The (yes, no) token ids a causal-LM reranker compares: those its checkpoint names
        (a sentence-transformers cross-encoder), else the tokens "yes" and "no"."""
        variant = self.variant
        if variant.yes_id is None or variant.no_id is None:
            return self._tokenizer.yes_id, self._tokenizer.no_id
        size = len(tokenizer)
        for name, value in (("true", variant.yes_id), ("false", variant.no_id)):
            if not 0 <= value < size:
                raise ModelKindError(
                    f"'{self.model_path}' names {name}_token_id={value}, outside its "
                    f"tokenizer's {size} tokens"
                )
        return variant.yes_id, variant.no_id

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
        return self._ranked(documents, self.score(query, documents, instruction), top_n)

    async def ascore(
        self, query: str, documents: Sequence[str], instruction: str | None = None
    ) -> np.ndarray:
        """``score``, awaitable."""
        check_text("query", query)
        docs = check_texts("documents", documents)
        return await self._ascore([(query, d) for d in docs], instruction)

    async def ascore_pairs(
        self, pairs: Sequence[tuple[str, str]], instruction: str | None = None
    ) -> np.ndarray:
        """``score_pairs``, awaitable."""
        return await self._ascore(check_pairs("pairs", pairs), instruction)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """``rerank``, awaitable."""
        check_optional_int("top_n", top_n, minimum=0)
        return self._ranked(documents, await self.ascore(query, documents, instruction), top_n)

    @staticmethod
    def _ranked(
        documents: Sequence[str], scores: np.ndarray, top_n: int | None
    ) -> list[RerankResult]:
        order = np.argsort(-scores, kind="stable")[:top_n]
        return [RerankResult(int(i), float(scores[i]), documents[i]) for i in order]

    def _task(self, instruction: str | None) -> str:
        return self.instruction if instruction is None else check_text("instruction", instruction)

    def _tokenize(
        self, pairs: list[tuple[str, str]], task: str
    ) -> tuple[list[RerankPrompt], np.ndarray]:
        distinct, inverse = unique_with_inverse(pairs)
        prompts_, truncation = self._tokenizer.encode(distinct, task)
        warn_truncation(truncation, self.max_length, "distinct query-document pairs")
        return prompts_, inverse

    @staticmethod
    def _spread(scores: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        return np.asarray(check_finite(scores, "scores")[inverse], dtype=np.float32)

    def _score(self, pairs: list[tuple[str, str]], instruction: str | None) -> np.ndarray:
        task = self._task(instruction)
        backend = self._backend
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        prompts_, inverse = self._tokenize(pairs, task)
        return self._spread(backend.score(prompts_), inverse)

    async def _ascore(self, pairs: list[tuple[str, str]], instruction: str | None) -> np.ndarray:
        task = self._task(instruction)
        backend = self._backend
        if not isinstance(backend, AsyncRerankBackend):
            # Local compute: in a worker thread, so the event loop keeps serving meanwhile.
            return await asyncio.to_thread(self._score, pairs, task)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        prompts_, inverse = await asyncio.to_thread(self._tokenize, pairs, task)
        return self._spread(await backend.ascore(prompts_), inverse)

    def __repr__(self) -> str:
        return (
            f"Qwen3Reranker({str(self.model_path)!r}, backend={self.backend!r}, "
            f"{self._placement()}, variant={self.variant.description!r})"
        )
