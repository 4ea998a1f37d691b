"""Internal (import its public names from ``langchain_qwen3``): ``Qwen3Embeddings``:
Qwen3-Embedding as a LangChain ``Embeddings``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from qwen3_core.adapter_settings import EmbedderSettings
from qwen3_core.validation import check_text, check_texts

if TYPE_CHECKING:
    from qwen3_core.lazy import LazyEngine


class TextEmbeddings(Embeddings):
    """What ``Qwen3Embeddings`` and ``Qwen3VLEmbeddings`` share: texts checked before
    anything is loaded, documents and queries embedded, sync and async. Its settings mixin
    gives the engine."""

    if TYPE_CHECKING:  # given by the adapter's settings mixin (qwen3_core.adapter_settings)
        _engine: LazyEngine[Any]

        @property
        def engine(self) -> Any: ...

        def call_settings(self) -> dict[str, Any]: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text, in input order."""
        checked = check_texts("texts", texts)  # before anything is loaded
        if not checked:
            return []
        vectors: list[list[float]] = self.engine.embed_documents(checked).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """The unit vector of the query ``text``, with ``query_instruction``."""
        check_text("text", text)
        vector: list[float] = self.engine.embed_queries([text], **self.call_settings())[0].tolist()
        return vector

    # The engine's async methods: on the server backend they await the network; locally
    # they run the model in a worker thread, so the event loop keeps serving meanwhile.
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` without blocking the event loop."""
        checked = check_texts("texts", texts)
        if not checked:
            return []
        engine = await self._engine.aget()
        vectors: list[list[float]] = (await engine.aembed_documents(checked)).tolist()
        return vectors

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` without blocking the event loop."""
        check_text("text", text)
        engine = await self._engine.aget()
        vectors = await engine.aembed_queries([text], **self.call_settings())
        vector: list[float] = vectors[0].tolist()
        return vector


class Qwen3Embeddings(EmbedderSettings, TextEmbeddings):
    """Qwen3-Embedding through ``qwen3_core.Qwen3Embedder``: documents are embedded as they
    are, queries as ``Instruct: {query_instruction}\\nQuery:{query}``; vectors are unit length.

    Constructing it loads nothing and touches no network: the engine is built on first use
    (where a bad model id or folder raises the engine's error), and its weights are shared by
    every adapter on the same model, device and dtype.

    ```python
    from langchain_qwen3 import Qwen3Embeddings

    emb = Qwen3Embeddings(model="Qwen/Qwen3-Embedding-0.6B")
    vectors = emb.embed_documents(["Beijing is the capital of China."])
    query_vector = emb.embed_query("What is the capital of China?")
    ```

    ``backend`` says where the model runs: ``"transformers"`` (the default), ``"vllm"``, or
    the options of one, e.g. ``TransformersOptions(device="cuda")`` or
    ``ServerOptions(base_url="http://gpu-1:8000")`` (from ``qwen3_core``).

    ``engine=Qwen3Embedder(...)`` uses a ready engine: the settings it fixes (``model``,
    ``backend``, ...: each field says) are then read from it, and giving any of them as well
    is an error; ``query_instruction`` is the engine's unless given. ``engine`` is the
    engine, built on first access.
    """
