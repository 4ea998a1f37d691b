"""The settings and lazily built engine shared by ``Qwen3Rerank`` and ``Qwen3CrossEncoder``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PrivateAttr

from langchain_qwen3._common import BackendField, LazyEngineAdapter
from qwen3_core import Qwen3Reranker
from qwen3_core.defaults import DEFAULT_RERANKER_MODEL, MAX_LENGTH, MIN_MAX_LENGTH
from qwen3_core.lazy import LazyEngine
from qwen3_core.prompts import DEFAULT_INSTRUCTION


class Qwen3RerankerSettings(LazyEngineAdapter):
    """A Qwen3-Reranker engine (``qwen3_core.Qwen3Reranker``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``backend`` says where the model runs: ``"transformers"``
    (the default), ``"vllm"``, or the options of one, e.g. ``TransformersOptions(device="cuda")``
    or ``ServerOptions(base_url="http://gpu-1:8000")`` (from ``qwen3_core``).
    ``engine=Qwen3Reranker(...)`` uses a ready engine: its settings then fill ``model``,
    ``backend`` and ``max_length``, and giving any of those as well is an error.
    ``instruction`` is the adapter's own.
    """

    model: str = DEFAULT_RERANKER_MODEL
    """Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint."""
    backend: BackendField = "transformers"
    """Where the model runs: ``"transformers"``, ``"vllm"``, or ``TransformersOptions``,
    ``VllmOptions`` or ``ServerOptions`` with that backend's settings."""
    instruction: str = DEFAULT_INSTRUCTION
    """The task in the reranker prompt; with ``engine=``, the engine's unless given."""
    max_length: int = Field(default=MAX_LENGTH, ge=MIN_MAX_LENGTH["reranker"])
    """Longest prompt in tokens; a longer document is truncated, the prompt's frame kept."""
    engine: Qwen3Reranker | None = Field(default=None, exclude=True, repr=False)
    """A ready engine to use instead of building one from the settings above."""

    _ENGINE_SETTINGS: ClassVar[tuple[str, ...]] = ("model", "backend", "max_length")
    _engine: LazyEngine[Qwen3Reranker] = PrivateAttr()

    def _build_engine(self) -> Qwen3Reranker:
        return Qwen3Reranker(
            self.model,
            backend=self.backend,
            instruction=self.instruction,
            max_length=self.max_length,
        )

    def _describe_engine(self, engine: Qwen3Reranker) -> None:
        self.model = str(engine.model_path)
        self.backend = engine.options
        self.max_length = engine.max_length
        if "instruction" not in self.model_fields_set:
            self.instruction = engine.instruction
