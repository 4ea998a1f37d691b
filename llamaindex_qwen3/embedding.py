"""``Qwen3Embedding``: Qwen3-Embedding as a LlamaIndex ``BaseEmbedding``."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import torch
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

from llamaindex_qwen3._common import (
    changed_settings,
    model_id,
    one_model_name,
    reject_unknown_kwargs,
    state_without_engine,
)
from qwen3_core import Qwen3Embedder
from qwen3_core.adapters import device_name, dtype_name, reject_settings_beside_engine
from qwen3_core.backends import Backend
from qwen3_core.lazy import LazyEngine
from qwen3_core.prompts import DEFAULT_EMBEDDING_MODEL
from qwen3_core.validation import check_text, check_texts

# LlamaIndex's default of 10 texts per call starves a GPU; the engine splits each call into
# token-budget batches itself, so a LlamaIndex batch only bounds the texts held at once.
DEFAULT_EMBED_BATCH_SIZE = 256
DEFAULT_MAX_LENGTH = 8192


class Qwen3Embedding(BaseEmbedding):
    """Qwen3-Embedding through ``qwen3_core.Qwen3Embedder``: texts (nodes) are embedded as
    they are, queries as ``Instruct: {query_instruction}\\nQuery:{query}``; vectors are unit
    length, so cosine similarity is their dot product.

    Constructing it loads nothing and touches no network: the engine (and the weights, shared
    by every adapter on the same model, device and dtype) is built on first use, where a bad
    model id or folder raises the engine's error.

    ```python
    from llama_index.core import VectorStoreIndex
    from llamaindex_qwen3 import Qwen3Embedding

    embed_model = Qwen3Embedding(model="Qwen/Qwen3-Embedding-0.6B")
    index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    ```

    Pass ``engine=Qwen3Embedder(...)`` to reuse a ready engine: its settings then fill
    ``model_name``, ``device``, ``dtype``, ``dimensions``, ``max_length`` and ``backend``
    (and ``query_instruction`` unless given), and changing any of those settings (or
    ``max_batch_tokens``) as well is an error.
    """

    model_name: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="Hugging Face hub id or local folder of a Qwen3-Embedding checkpoint.",
    )
    device: str | None = Field(
        default=None,
        description='"cpu", "cuda", "cuda:N" or "mps"; None: CUDA when available, else MPS, '
        "else CPU.",
    )
    dtype: str | None = Field(
        default=None,
        description='"float32", "bfloat16" or "float16"; None: bfloat16 on GPUs with bf16 '
        "units, float16 on older GPUs, else float32.",
    )
    query_instruction: str | None = Field(
        default=None,
        description="The task given to queries (texts get none); None: the engine's, which is "
        "the query prompt the checkpoint declares (a fine-tuned model's), else "
        "DEFAULT_INSTRUCTION.",
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Keep the first N dimensions (Matryoshka) before normalising; None: all.",
    )
    embed_batch_size: int = Field(
        default=DEFAULT_EMBED_BATCH_SIZE,
        gt=0,
        le=2048,
        description="Texts per engine call; the engine batches them by tokens itself.",
    )
    max_length: int = Field(
        default=DEFAULT_MAX_LENGTH,
        ge=2,
        description="Longest input in tokens; longer texts are truncated, keeping the start.",
    )
    max_batch_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Padded tokens per forward pass; None: the engine's default for the device.",
    )
    backend: Backend = Field(default="transformers", description="Where the model runs.")
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Further engine arguments for the backend: for vLLM tensor_parallel_size, "
        "gpu_memory_utilization, max_model_len and vllm_kwargs; for the server base_url, "
        "api_key, timeout, max_concurrency and max_retries.",
    )

    _engine: LazyEngine[Qwen3Embedder] = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_name: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        query_instruction: str | None = None,
        dimensions: int | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_batch_tokens: int | None = None,
        backend: Backend = "transformers",
        backend_options: Mapping[str, Any] | None = None,
        engine: Qwen3Embedder | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        """Args:
        model: Hub id or local folder of a Qwen3-Embedding checkpoint (default
            ``Qwen/Qwen3-Embedding-0.6B``); ``model_name`` is the same, by LlamaIndex's
            name.
        query_instruction: The task given to queries; None: the engine's (the query
            prompt the checkpoint declares, else ``DEFAULT_INSTRUCTION``).
        kwargs: Further ``BaseEmbedding`` fields (``num_workers``, ``embeddings_cache``,
            ...); any other name is a TypeError.
        """
        model_name = one_model_name(model, model_name, DEFAULT_EMBEDDING_MODEL)
        reject_unknown_kwargs(type(self).__name__, kwargs, BaseEmbedding)
        if engine is not None:
            if not isinstance(engine, Qwen3Embedder):
                raise TypeError(f"engine must be a Qwen3Embedder, got {type(engine).__name__}")
            reject_settings_beside_engine(
                changed_settings(
                    {
                        "model_name": (model_id(model_name), DEFAULT_EMBEDDING_MODEL),
                        "device": (device, None),
                        "dtype": (dtype, None),
                        "dimensions": (dimensions, None),
                        "max_length": (max_length, DEFAULT_MAX_LENGTH),
                        "max_batch_tokens": (max_batch_tokens, None),
                        "backend": (backend, "transformers"),
                        "backend_options": (backend_options, None),
                    }
                ),
                "Qwen3Embedder",
            )
            # The fields describe what actually runs, not the defaults.
            model_name, device, dtype = str(engine.model_path), engine.device, engine.dtype
            dimensions, max_length, backend = engine.dimensions, engine.max_length, engine.backend
            if query_instruction is None:
                query_instruction = engine.instruction
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        # Through a dict: BaseEmbedding's typed __init__ does not know this class's fields.
        fields: dict[str, Any] = {
            "model_name": model_id(model_name),
            "device": device_name(device),
            "dtype": dtype_name(dtype),
            "query_instruction": query_instruction,
            "dimensions": dimensions,
            "embed_batch_size": embed_batch_size,
            "max_length": max_length,
            "max_batch_tokens": max_batch_tokens,
            "backend": backend,
            "backend_options": dict(backend_options or {}),
        }
        super().__init__(**fields, **kwargs)
        if engine is not None:
            self._engine = LazyEngine.ready(engine)
        else:
            self._engine = LazyEngine(
                functools.partial(
                    Qwen3Embedder,
                    self.model_name,
                    device=self.device,
                    dtype=self.dtype,
                    max_length=self.max_length,
                    instruction=self.query_instruction,
                    dimensions=self.dimensions,
                    max_batch_tokens=self.max_batch_tokens,
                    backend=self.backend,
                    **self.backend_options,
                )
            )

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Embedding"

    @property
    def engine(self) -> Qwen3Embedder:
        """The engine, built (and its weights loaded) on the first access."""
        return self._engine.get()

    @property
    def engine_loaded(self) -> bool:
        """Whether the engine has been built yet."""
        return self._engine.loaded

    # The public entry points check their input first: before the engine is built, before
    # LlamaIndex batches a list (its batches would renumber the items, and it would embed a
    # bare string character by character) and with the caller's argument names.
    def get_query_embedding(self, query: str) -> Embedding:
        return super().get_query_embedding(check_text("query", query))

    async def aget_query_embedding(self, query: str) -> Embedding:
        return await super().aget_query_embedding(check_text("query", query))

    def get_text_embedding(self, text: str) -> Embedding:
        return super().get_text_embedding(check_text("text", text))

    async def aget_text_embedding(self, text: str) -> Embedding:
        return await super().aget_text_embedding(check_text("text", text))

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        checked = check_texts("texts", texts)
        return super().get_text_embedding_batch(checked, show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        checked = check_texts("texts", texts)
        return await super().aget_text_embedding_batch(checked, show_progress, **kwargs)

    def _get_query_embedding(self, query: str) -> Embedding:
        vector: Embedding = self.engine.embed_queries([query], self.query_instruction)[0].tolist()
        return vector

    def _get_text_embedding(self, text: str) -> Embedding:
        vector: Embedding = self.engine.embed_documents([text])[0].tolist()
        return vector

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        # One engine call per LlamaIndex batch: the engine sorts and packs it by tokens.
        vectors: list[Embedding] = self.engine.embed_documents(texts).tolist()
        return vectors

    # The engine's async methods: on the server backend they await the network; locally they
    # run the model in a worker thread (as does a first build, which loads weights), so the
    # event loop keeps serving meanwhile.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        engine = await self._engine.aget()
        vectors = await engine.aembed_queries([query], self.query_instruction)
        vector: Embedding = vectors[0].tolist()
        return vector

    async def _aget_text_embedding(self, text: str) -> Embedding:
        vectors = await self._aget_text_embeddings([text])
        return vectors[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        engine = await self._engine.aget()
        vectors: list[Embedding] = (await engine.aembed_documents(texts)).tolist()
        return vectors

    def __getstate__(self) -> dict[str, Any]:
        return state_without_engine(self)
