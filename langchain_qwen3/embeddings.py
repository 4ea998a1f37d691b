"""``Qwen3Embeddings``: Qwen3-Embedding as a LangChain ``Embeddings``."""

from __future__ import annotations

from typing import ClassVar

from langchain_core.embeddings import Embeddings
from pydantic import Field, PrivateAttr

from langchain_qwen3._common import BackendField, LazyEngineAdapter
from qwen3_core import Qwen3Embedder
from qwen3_core.defaults import DEFAULT_EMBEDDING_MODEL, MAX_LENGTH, MIN_MAX_LENGTH
from qwen3_core.lazy import LazyEngine
from qwen3_core.validation import check_text, check_texts


class Qwen3Embeddings(LazyEngineAdapter, Embeddings):
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

    ``engine=Qwen3Embedder(...)`` uses a ready engine: its settings then fill ``model``,
    ``backend``, ``dimensions`` and ``max_length``, and giving any of those as well is an
    error. ``query_instruction`` is the adapter's own.
    """

    model: str = DEFAULT_EMBEDDING_MODEL
    """Hugging Face hub id or local folder of a Qwen3-Embedding checkpoint."""
    backend: BackendField = "transformers"
    """Where the model runs: ``"transformers"``, ``"openvino"``, ``"vllm"``, or
    ``TransformersOptions``, ``OpenVINOOptions``, ``VllmOptions`` or ``ServerOptions`` with
    that backend's settings."""
    query_instruction: str | None = None
    """The task given to queries (documents get none); None: the engine's, which is the query
    prompt the checkpoint declares (a fine-tuned model's), else ``DEFAULT_INSTRUCTION``."""
    dimensions: int | None = Field(default=None, ge=1)
    """Keep the first N dimensions (Matryoshka) before normalising; None: all of them."""
    max_length: int = Field(default=MAX_LENGTH, ge=MIN_MAX_LENGTH["embedding"])
    """Longest input in tokens; longer texts are truncated, keeping their beginning."""
    engine: Qwen3Embedder | None = Field(default=None, exclude=True, repr=False)
    """A ready engine to use instead of building one from the settings above."""

    _ENGINE_SETTINGS: ClassVar[tuple[str, ...]] = ("model", "backend", "dimensions", "max_length")
    _engine: LazyEngine[Qwen3Embedder] = PrivateAttr()

    def _build_engine(self) -> Qwen3Embedder:
        return Qwen3Embedder(
            self.model,
            backend=self.backend,
            instruction=self.query_instruction,
            dimensions=self.dimensions,
            max_length=self.max_length,
        )

    def _describe_engine(self, engine: Qwen3Embedder) -> None:
        self.model = str(engine.model_path)
        self.backend = engine.options
        self.dimensions = engine.dimensions
        self.max_length = engine.max_length
        if "query_instruction" not in self.model_fields_set:
            self.query_instruction = engine.instruction

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit vector per text, in input order."""
        checked = check_texts("texts", texts)  # before anything is loaded
        if not checked:
            return []
        vectors: list[list[float]] = self._engine.get().embed_documents(checked).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """The unit vector of ``Instruct: {query_instruction}\\nQuery:{text}``."""
        check_text("text", text)
        engine = self._engine.get()
        vector: list[float] = engine.embed_queries([text], self.query_instruction)[0].tolist()
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
        vectors = await engine.aembed_queries([text], self.query_instruction)
        vector: list[float] = vectors[0].tolist()
        return vector
