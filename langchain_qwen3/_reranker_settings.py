"""The settings and lazily built engine shared by ``Qwen3Rerank`` and ``Qwen3CrossEncoder``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, model_validator
from typing_extensions import Self

from langchain_qwen3._common import BackendField, LazyEngineAdapter
from qwen3_core import Qwen3Reranker
from qwen3_core.defaults import (
    CHUNK_OVERLAP,
    DEFAULT_RERANKER_MODEL,
    MAX_CHUNKS_PER_DOCUMENT,
    MAX_LENGTH,
    MIN_MAX_LENGTH,
)
from qwen3_core.document_windows import DocumentBudget, LongDocuments
from qwen3_core.lazy import LazyEngine
from qwen3_core.prompts import DEFAULT_INSTRUCTION


class Qwen3RerankerSettings(LazyEngineAdapter):
    """A Qwen3-Reranker engine (``qwen3_core.Qwen3Reranker``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``backend`` says where the model runs: ``"transformers"``
    (the default), ``"vllm"``, or the options of one, e.g. ``TransformersOptions(device="cuda")``
    or ``ServerOptions(base_url="http://gpu-1:8000")`` (from ``qwen3_core``).
    ``engine=Qwen3Reranker(...)`` uses a ready engine: its settings then fill ``model``,
    ``backend``, ``max_length``, ``chunk_overlap`` and ``max_chunks_per_document``, and giving
    any of those as well is an error. ``instruction``, ``max_document_tokens`` and
    ``long_documents`` are the adapter's own (the engine's unless given).
    """

    model: str = DEFAULT_RERANKER_MODEL
    """Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint."""
    backend: BackendField = "transformers"
    """Where the model runs: ``"transformers"``, ``"openvino"``, ``"vllm"``, or
    ``TransformersOptions``, ``OpenVINOOptions``, ``VllmOptions`` or ``ServerOptions`` with
    that backend's settings."""
    instruction: str = DEFAULT_INSTRUCTION
    """The task in the reranker prompt; with ``engine=``, the engine's unless given."""
    max_length: int = Field(default=MAX_LENGTH, ge=MIN_MAX_LENGTH["reranker"])
    """Longest prompt in tokens; a longer document is truncated, the prompt's frame kept."""
    max_document_tokens: int | None = Field(default=None, ge=1)
    """Most tokens of a document in one prompt; None: whatever ``max_length`` leaves."""
    long_documents: LongDocuments = "truncate"
    """A document over the budget: ``"truncate"`` scores its first tokens; ``"chunk"``
    scores it in overlapping windows and keeps the best window's score."""
    chunk_overlap: int = Field(default=CHUNK_OVERLAP, ge=0)
    """Tokens shared by neighbouring windows of a chunked document (at most half a window)."""
    max_chunks_per_document: int = Field(default=MAX_CHUNKS_PER_DOCUMENT, ge=1)
    """Most windows scored per chunked document; past them, one warning per call."""
    engine: Qwen3Reranker | None = Field(default=None, exclude=True, repr=False)
    """A ready engine to use instead of building one from the settings above."""

    _ENGINE_SETTINGS: ClassVar[tuple[str, ...]] = (
        "model",
        "backend",
        "max_length",
        "chunk_overlap",
        "max_chunks_per_document",
    )
    _engine: LazyEngine[Qwen3Reranker] = PrivateAttr()

    @model_validator(mode="after")
    def _check_document_budget(self) -> Self:
        DocumentBudget(
            self.max_document_tokens,
            self.long_documents,
            self.chunk_overlap,
            self.max_chunks_per_document,
        )
        return self

    def _build_engine(self) -> Qwen3Reranker:
        return Qwen3Reranker(
            self.model,
            backend=self.backend,
            instruction=self.instruction,
            max_length=self.max_length,
            max_document_tokens=self.max_document_tokens,
            long_documents=self.long_documents,
            chunk_overlap=self.chunk_overlap,
            max_chunks_per_document=self.max_chunks_per_document,
        )

    def _describe_engine(self, engine: Qwen3Reranker) -> None:
        self.model = str(engine.model_path)
        self.backend = engine.options
        self.max_length = engine.max_length
        self.chunk_overlap = engine.chunk_overlap
        self.max_chunks_per_document = engine.max_chunks_per_document
        for name in ("instruction", "max_document_tokens", "long_documents"):
            if name not in self.model_fields_set:
                setattr(self, name, getattr(engine, name))

    def _call_settings(self) -> dict[str, Any]:
        """The engine call's settings that are the adapter's own."""
        return {
            "instruction": self.instruction,
            "max_document_tokens": self.max_document_tokens,
            "long_documents": self.long_documents,
        }
