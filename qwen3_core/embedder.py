"""Internal (import its public names from ``qwen3_core``): ``Qwen3Embedder``: Qwen3-Embedding as
a function from texts to unit vectors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import numpy as np

from qwen3_core import prompts
from qwen3_core.backend_options import BackendChoice, backend_options
from qwen3_core.backends.base import AsyncEmbeddingBackend, EmbeddingBackend
from qwen3_core.backends.registry import open_model
from qwen3_core.batching import unique_with_inverse
from qwen3_core.defaults import DEFAULT_EMBEDDING_MODEL, MAX_LENGTH, MIN_MAX_LENGTH
from qwen3_core.engine import EngineBase, check_finite, warn_truncation
from qwen3_core.hub import HubOptions, ModelSource
from qwen3_core.tokenization import EmbeddingTokenizer, TokenIds
from qwen3_core.validation import check_int, check_optional_int, check_text, check_texts


class Qwen3Embedder(EngineBase[EmbeddingBackend]):
    """Embeds documents and instructed queries with a Qwen3-Embedding model.

    Last-token pooling, optional Matryoshka cut to ``dimensions``, L2 normalisation; queries
    are prefixed ``Instruct: {instruction}\\nQuery:`` and documents are embedded as they are.
    Every checkpoint variant in circulation loads exactly (the flat layout, causal-LM saves,
    sentence-transformers folders, with the prompts they declare), and one that cannot is
    refused before any weights are read (see docs/engine.md).

    ```python
    from qwen3_core import Qwen3Embedder, TransformersOptions

    embedder = Qwen3Embedder(
        "Qwen/Qwen3-Embedding-0.6B", backend=TransformersOptions(device="cuda")
    )
    vectors = embedder.embed_documents(["Beijing is the capital of China."])
    ```

    Args:
        model: Hugging Face hub id or local folder of a Qwen3-Embedding checkpoint.
        backend: Where the model runs: ``"transformers"`` (in this process, the default),
            ``"openvino"``, ``"vllm"``, or the options of one: ``TransformersOptions(device=...,
            dtype=..., quantization=...)``, ``OpenVINOOptions(...)`` (CPU, float32),
            ``VllmOptions(tensor_parallel_size=...)``,
            ``ServerOptions(base_url=...)`` (vLLM servers; needs no torch).
        instruction: The task given to queries; each call may give its own. None: the query
            prompt the checkpoint declares (a fine-tuned model's), else
            ``DEFAULT_INSTRUCTION``.
        dimensions: Keep the first N dimensions (Matryoshka) before normalising; None: all.
        max_length: Longest input in tokens; longer texts are cut, keeping their beginning.
        revision: For a hub id: the branch, tag or commit to download.
        token: For a hub id: the access token (True: the one saved by ``hf auth login``).
        cache_dir: For a hub id: where downloads are kept.
        local_files_only: For a hub id: use only what is already downloaded.
        source: ``"huggingface"`` or ``"modelscope"``; None: ModelScope when
            ``QWEN3_RAG_USE_MODELSCOPE=1``, else the Hugging Face Hub.

    Raises:
        ModelKindError: The checkpoint is not a Qwen3-Embedding model that loads exactly.
        ModelNotFoundError: The model is neither a folder nor a hub id that can be fetched.
        ValueError: A setting is out of range, or the device is not available.
        TypeError: An unknown keyword argument.
        ImportError: The backend's libraries are not installed.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_EMBEDDING_MODEL,
        *,
        backend: BackendChoice = "transformers",
        instruction: str | None = None,
        dimensions: int | None = None,
        max_length: int = MAX_LENGTH,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        source: ModelSource | None = None,
    ) -> None:
        self._backend_or_none = None
        options = backend_options(backend)
        if instruction is not None:
            check_text("instruction", instruction)
        self.max_length = check_int("max_length", max_length, minimum=MIN_MAX_LENGTH["embedding"])
        check_optional_int("dimensions", dimensions, minimum=1)
        opened = open_model(
            model,
            "embedding",
            options,
            max_length=self.max_length,
            hub=HubOptions(revision, token, cache_dir, local_files_only, source),
        )
        self._take(opened)
        self._tokenizer = EmbeddingTokenizer(opened.checkpoint.tokenizer, self.max_length)
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
        self._hidden_size = int(opened.checkpoint.config["hidden_size"])
        self.dimensions = check_optional_int(
            "dimensions", dimensions, minimum=1, maximum=self._hidden_size
        )
        self._backend_or_none = opened.embedding(os.fspath(model), max_length=self.max_length)

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

    def tokenize_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The token ids the model sees for each text by ``embed_documents``: truncated to
        ``max_length``, ending in ``<|endoftext|>``.

        Raises:
            TypeError: ``texts`` is not a list of str.
        """
        return self._tokenizer.encode(self._document_texts(texts))[0]

    def tokenize_queries(
        self, queries: Sequence[str], instruction: str | None = None
    ) -> list[np.ndarray]:
        """The token ids the model sees for each query by ``embed_queries``.

        Raises:
            TypeError: ``queries`` is not a list of str.
        """
        return self._tokenizer.encode(self._query_texts(queries, instruction))[0]

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
