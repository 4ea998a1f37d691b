"""``Qwen3Embedding``: Qwen3-Embedding as a LlamaIndex ``BaseEmbedding``."""

from __future__ import annotations

import functools
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

from llamaindex_qwen3._common import (
    BackendField,
    one_model_name,
    reject_unknown_kwargs,
    state_without_engine,
)
from qwen3_core import Qwen3Embedder
from qwen3_core.adapters import reject_settings_beside_engine
from qwen3_core.backends.options import BackendChoice
from qwen3_core.defaults import (
    DEFAULT_EMBEDDING_MODEL,
    EMBED_BATCH_SIZE,
    MAX_EMBED_BATCH_SIZE,
    MAX_LENGTH,
    MIN_MAX_LENGTH,
)
from qwen3_core.lazy import LazyEngine
from qwen3_core.validation import check_text, check_texts


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
    ``model_name``, ``backend``, ``dimensions`` and ``max_length`` (and
    ``query_instruction`` unless given), and giving any of those as well is an error.
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # a backend dict may hold an api_key

    model_name: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="Hugging Face hub id or local folder of a Qwen3-Embedding checkpoint.",
    )
    backend: BackendField = Field(
        default="transformers",
        description='Where the model runs: "transformers", "openvino", "vllm", or '
        "TransformersOptions, OpenVINOOptions, VllmOptions or ServerOptions with that "
        "backend's settings.",
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
        default=EMBED_BATCH_SIZE,
        gt=0,
        le=MAX_EMBED_BATCH_SIZE,
        description="Texts per engine call; the engine batches them by tokens itself.",
    )
    max_length: int = Field(
        default=MAX_LENGTH,
        ge=MIN_MAX_LENGTH["embedding"],
        description="Longest input in tokens; longer texts are truncated, keeping the start.",
    )

    _engine: LazyEngine[Qwen3Embedder] = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_name: str | os.PathLike[str] | None = None,
        backend: BackendChoice | None = None,
        query_instruction: str | None = None,
        dimensions: int | None = None,
        embed_batch_size: int = EMBED_BATCH_SIZE,
        max_length: int | None = None,
        engine: Qwen3Embedder | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        """Args:
        model: Hub id or local folder of a Qwen3-Embedding checkpoint (default
            ``Qwen/Qwen3-Embedding-0.6B``); ``model_name`` is the same, by LlamaIndex's
            name.
        backend: Where the model runs: ``"transformers"`` (default), ``"openvino"``,
            ``"vllm"``, or ``TransformersOptions(device=...)``, ``OpenVINOOptions(...)``,
            ``VllmOptions(...)``,
            ``ServerOptions(base_url=...)`` from ``qwen3_core``.
        query_instruction: The task given to queries; None: the engine's (the query
            prompt the checkpoint declares, else ``DEFAULT_INSTRUCTION``).
        dimensions: Keep the first N dimensions (Matryoshka) before normalising; None: all.
        embed_batch_size: Texts per engine call (the engine batches them by tokens).
        max_length: Longest input in tokens; None: 8192.
        engine: A ready ``Qwen3Embedder`` to use instead of building one from the settings.
        callback_manager: LlamaIndex's callback manager.
        kwargs: Further ``BaseEmbedding`` fields (``num_workers``, ``embeddings_cache``,
            ...); any other name is a TypeError.

        Raises:
            TypeError: An unknown keyword argument, or an engine of the wrong class.
            ValueError: Settings given beside ``engine``, or a setting out of range.
        """
        model = one_model_name(model, model_name)
        reject_unknown_kwargs(type(self).__name__, kwargs, BaseEmbedding)
        if engine is not None:
            if not isinstance(engine, Qwen3Embedder):
                raise TypeError(f"engine must be a Qwen3Embedder, got {type(engine).__name__}")
            reject_settings_beside_engine(
                {
                    "model_name": model,
                    "backend": backend,
                    "dimensions": dimensions,
                    "max_length": max_length,
                },
                "Qwen3Embedder",
            )
            # The fields describe what actually runs, not the defaults.
            model, backend = str(engine.model_path), engine.options
            dimensions, max_length = engine.dimensions, engine.max_length
            if query_instruction is None:
                query_instruction = engine.instruction
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        # Through a dict: BaseEmbedding's typed __init__ does not know this class's fields.
        fields: dict[str, Any] = {
            "model_name": DEFAULT_EMBEDDING_MODEL if model is None else model,
            "backend": "transformers" if backend is None else backend,
            "query_instruction": query_instruction,
            "dimensions": dimensions,
            "embed_batch_size": embed_batch_size,
            "max_length": MAX_LENGTH if max_length is None else max_length,
        }
        super().__init__(**fields, **kwargs)
        if engine is not None:
            self._engine = LazyEngine.ready(engine)
        else:
            self._engine = LazyEngine(
                functools.partial(
                    Qwen3Embedder,
                    self.model_name,
                    backend=self.backend,
                    instruction=self.query_instruction,
                    dimensions=self.dimensions,
                    max_length=self.max_length,
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
