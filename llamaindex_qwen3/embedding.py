"""Internal (import its public names from ``llamaindex_qwen3``): ``Qwen3Embedding``:
Qwen3-Embedding as a LlamaIndex ``BaseEmbedding``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field

from llamaindex_qwen3._common import KeywordChecks
from qwen3_core.adapter_settings import NamedEmbedderSettings
from qwen3_core.defaults import EMBED_BATCH_SIZE, MAX_EMBED_BATCH_SIZE
from qwen3_core.validation import check_text, check_texts

if TYPE_CHECKING:
    from qwen3_core.lazy import LazyEngine


class TextEmbedding(BaseEmbedding):
    """What ``Qwen3Embedding`` and ``Qwen3VLEmbedding`` share: texts checked at the public
    entry points, queries embedded with the query instruction and texts as documents, sync
    and async. Its settings mixin gives the engine."""

    if TYPE_CHECKING:  # given by the adapter's settings mixin (qwen3_core.adapter_settings)
        _engine: LazyEngine[Any]

        @property
        def engine(self) -> Any: ...

        def call_settings(self) -> dict[str, Any]: ...

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
        vectors = self.engine.embed_queries([query], **self.call_settings())
        vector: Embedding = vectors[0].tolist()
        return vector

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        # One engine call per LlamaIndex batch: the engine sorts and packs it by tokens.
        vectors: list[Embedding] = self.engine.embed_documents(texts).tolist()
        return vectors

    # The engine's async methods: on the server backend they await the network; locally they
    # run the model in a worker thread (as does a first build, which loads weights), so the
    # event loop keeps serving meanwhile.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        engine = await self._engine.aget()
        vectors = await engine.aembed_queries([query], **self.call_settings())
        vector: Embedding = vectors[0].tolist()
        return vector

    async def _aget_text_embedding(self, text: str) -> Embedding:
        vectors = await self._aget_text_embeddings([text])
        return vectors[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        engine = await self._engine.aget()
        vectors: list[Embedding] = (await engine.aembed_documents(texts)).tolist()
        return vectors


class Qwen3Embedding(NamedEmbedderSettings, KeywordChecks, TextEmbedding):
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

    It takes keyword arguments, as LlamaIndex's classes do: the settings below and the
    ``BaseEmbedding`` fields (``callback_manager``, ``num_workers``, ``embeddings_cache``,
    ...); any other name, or an engine of the wrong class, is a ``TypeError``. The model is
    ``model=`` (or LlamaIndex's ``model_name=``), kept in ``model_name``.

    Pass ``engine=Qwen3Embedder(...)`` to reuse a ready engine: the settings it fixes
    (``model_name``, ``backend``, ...: each field says) are then read from it, and giving
    any of them as well is an error; ``query_instruction`` is the engine's unless given.
    """

    embed_batch_size: int = Field(default=EMBED_BATCH_SIZE, gt=0, le=MAX_EMBED_BATCH_SIZE)
    """Texts per engine call (not LlamaIndex's 10): the engine batches them by tokens itself."""

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Embedding"
