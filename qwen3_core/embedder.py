"""``Qwen3Embedder``: Qwen3-Embedding as a function from texts to unit vectors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from qwen3_core import prompts
from qwen3_core.backends import Backend
from qwen3_core.backends.base import AsyncEmbeddingBackend, EmbeddingBackend
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
from qwen3_core.tokenization import EmbeddingTokenizer, LiteralTokenizer, TokenIds
from qwen3_core.validation import check_int, check_optional_int, check_text, check_texts


class Qwen3Embedder(EngineBase[EmbeddingBackend]):
    """Embeds documents and instructed queries with a Qwen3-Embedding model.

    Last-token pooling, optional Matryoshka cut to ``dimensions``, L2 normalisation; queries
    are prefixed ``Instruct: {instruction}\\nQuery:`` and documents are embedded as they are.
    ``backend="vllm"`` runs the model on vLLM (``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len`` and ``vllm_kwargs`` apply to it only);
    ``backend="server"`` sends the token ids to vLLM servers at ``base_url`` (one address or a
    list, used round-robin; ``api_key``, ``timeout`` in seconds, ``max_concurrency`` requests
    in flight, ``max_retries``; see docs/serving.md). The ``a``-methods are the async forms:
    on the server backend they wait on the network without a thread.
    ``quantization="int8"`` (CPU, transformers backend, float32 only; off by default) runs the
    decoder's linear layers in int8 on the CPU's VNNI units: faster, not exact (see
    docs/performance.md).
    For a hub id, ``revision``, ``token``, ``cache_dir`` and ``local_files_only`` go to the
    download, and ``source="modelscope"`` (or QWEN3_RAG_USE_MODELSCOPE=1) fetches from
    ModelScope; ``model_kwargs`` go to transformers' ``from_pretrained``. Every checkpoint
    variant in circulation loads and scores exactly, and one that cannot is refused with a
    ``ModelKindError`` before any weights are read (see docs/engine.md).
    With ``instruction=None``, queries get the query prompt the checkpoint's
    sentence-transformers config declares (a fine-tuned model's), else
    ``DEFAULT_INSTRUCTION``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = prompts.DEFAULT_EMBEDDING_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int = 8192,
        instruction: str | None = None,
        dimensions: int | None = None,
        max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
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
        if instruction is not None:
            check_text("instruction", instruction)
        self.max_length = check_int("max_length", max_length, minimum=2)
        check_optional_int("dimensions", dimensions, minimum=1)
        check_optional_int("max_batch_tokens", max_batch_tokens, minimum=1)
        pool = server_pool(backend, base_url, api_key, timeout, max_concurrency, max_retries)
        opened = open_model(
            model,
            "embedding",
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
        self._tokenizer = EmbeddingTokenizer(
            LiteralTokenizer.of(opened.checkpoint.tokenizer), self.max_length
        )
        self.variant = opened.checkpoint.variant
        self.instruction, self.query_prompt = prompts.query_prompt_for(
            instruction, self.variant.query_prompt
        )
        self.query_prompt_source = (
            "checkpoint"
            if instruction is None and self.variant.query_prompt is not None
            else "instruction"
        )
        self._tokenizer.check_prompt_room(self.query_prompt)
        self.document_prompt = self.variant.document_prompt or ""
        hidden_size = int(opened.checkpoint.config["hidden_size"])
        self.dimensions = check_optional_int(
            "dimensions", dimensions, minimum=1, maximum=hidden_size
        )
        if opened.loaded is not None:
            from qwen3_core.backends.transformers import TransformersEmbeddingBackend

            self._backend_or_none = TransformersEmbeddingBackend(
                opened.loaded, max_batch_tokens=max_batch_tokens, show_progress=show_progress
            )
        elif pool is not None:
            from qwen3_core.backends.server import ServerEmbeddingBackend

            self._backend_or_none = ServerEmbeddingBackend(
                pool, os.fspath(model), hidden_size=hidden_size
            )
        else:
            from qwen3_core.backends.vllm import VllmEmbeddingBackend

            self._backend_or_none = VllmEmbeddingBackend(
                opened.checkpoint.folder,
                hidden_size=hidden_size,
                dtype=self.dtype,
                max_length=self.max_length,
                options=vllm_options(
                    tensor_parallel_size, gpu_memory_utilization, max_model_len, vllm_kwargs
                ),
            )
        self._hidden_size = hidden_size

    @property
    def dimension(self) -> int:
        """Length of the returned vectors."""
        return self.dimensions or self._hidden_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimension), rows L2-normalised; texts are embedded as they are
        (after the document prompt a fine-tuned checkpoint declares, if any)."""
        return self._embed(self._document_texts(texts))

    def embed_queries(self, queries: Sequence[str], instruction: str | None = None) -> np.ndarray:
        """Like ``embed_documents``, each query as ``Instruct: {instruction}\\nQuery:{query}``
        (``instruction`` defaults to the one given at construction; with none given there,
        the query prompt the checkpoint declares, else the default instruction)."""
        return self._embed(self._query_texts(queries, instruction))

    def _document_texts(self, texts: Sequence[str]) -> list[str]:
        checked = check_texts("texts", texts)
        prompt = self.document_prompt
        return [prompt + t for t in checked] if prompt else checked

    def _query_texts(self, queries: Sequence[str], instruction: str | None) -> list[str]:
        checked = check_texts("queries", queries)
        prompt = self.query_prompt
        if instruction is not None:
            prompt = prompts.embedding_query_text(check_text("instruction", instruction), "")
            self._tokenizer.check_prompt_room(prompt)
        return [prompt + q for q in checked]

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """``embed_documents``, awaitable."""
        return await self._aembed(self._document_texts(texts))

    async def aembed_queries(
        self, queries: Sequence[str], instruction: str | None = None
    ) -> np.ndarray:
        """``embed_queries``, awaitable."""
        return await self._aembed(self._query_texts(queries, instruction))

    def _tokenize(self, texts: list[str]) -> tuple[list[TokenIds], np.ndarray]:
        distinct, inverse = unique_with_inverse(texts)
        sequences, truncation = self._tokenizer.encode(distinct)
        warn_truncation(truncation, self.max_length, "distinct texts")
        return sequences, inverse

    def _pool(self, states: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        states = check_finite(states[:, : self.dimension], "embeddings")
        norms = np.linalg.norm(states, axis=1, keepdims=True)
        return np.asarray((states / np.maximum(norms, 1e-12))[inverse], dtype=np.float32)

    def _embed(self, texts: list[str]) -> np.ndarray:
        backend = self._backend
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        sequences, inverse = self._tokenize(texts)
        return self._pool(backend.embed(sequences), inverse)

    async def _aembed(self, texts: list[str]) -> np.ndarray:
        backend = self._backend
        if not isinstance(backend, AsyncEmbeddingBackend):
            # Local compute: in a worker thread, so the event loop keeps serving meanwhile.
            return await asyncio.to_thread(self._embed, texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        sequences, inverse = await asyncio.to_thread(self._tokenize, texts)
        return self._pool(await backend.aembed(sequences), inverse)

    def _prompt_note(self) -> str:
        """Says so when queries get the checkpoint's own prompt rather than the default."""
        note = ""
        default = prompts.embedding_query_text(prompts.DEFAULT_INSTRUCTION, "")
        if self.query_prompt_source == "checkpoint" and self.query_prompt != default:
            note = f", query_prompt={self.query_prompt!r} (from the checkpoint)"
        if self.document_prompt:
            note += f", document_prompt={self.document_prompt!r} (from the checkpoint)"
        return note

    def __repr__(self) -> str:
        return (
            f"Qwen3Embedder({str(self.model_path)!r}, backend={self.backend!r}, "
            f"{self._placement()}, dimension={self.dimension}{self._prompt_note()})"
        )
