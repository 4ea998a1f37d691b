"""The settings and lazily built engine shared by ``Qwen3Rerank`` and ``Qwen3CrossEncoder``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from langchain_qwen3._common import DeviceName, DtypeName, LazyEngineAdapter
from qwen3_core import Qwen3Reranker
from qwen3_core.adapters import dtype_name
from qwen3_core.backends import Backend
from qwen3_core.lazy import LazyEngine
from qwen3_core.prompts import DEFAULT_INSTRUCTION, DEFAULT_RERANKER_MODEL


class Qwen3RerankerSettings(LazyEngineAdapter):
    """A Qwen3-Reranker engine (``qwen3_core.Qwen3Reranker``), built on first use.

    Constructing loads nothing and touches no network; a bad model id or folder raises the
    engine's error on first use. ``engine=Qwen3Reranker(...)`` uses a ready engine: its
    settings then fill ``model``, ``device``, ``dtype`` and ``max_length``, and giving any
    engine setting as well is an error. ``instruction`` is the adapter's own.
    """

    model: str = DEFAULT_RERANKER_MODEL
    """Hugging Face hub id or local folder of a Qwen3-Reranker checkpoint."""
    instruction: str = DEFAULT_INSTRUCTION
    """The task in the reranker prompt; with ``engine=``, the engine's unless given."""
    device: DeviceName = None
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; None: CUDA when available, else MPS,
    else CPU."""
    dtype: DtypeName = None
    """``"float32"``, ``"bfloat16"`` or ``"float16"``; None: bfloat16 on GPUs with bf16 units,
    float16 on older GPUs, float32 elsewhere."""
    max_length: int = Field(default=8192, ge=1)
    """Longest prompt in tokens; a longer document is truncated, the prompt's frame kept."""
    max_batch_tokens: int | None = Field(default=None, ge=1)
    """Padded tokens per forward pass; None: the engine's default for the device."""
    show_progress: bool | None = None
    """Progress bar over batches; None: only for large inputs."""
    backend: Backend = "transformers"
    """Where the model runs."""
    backend_options: dict[str, Any] = Field(default_factory=dict)
    """Further engine arguments for the backend: for vLLM ``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len`` and ``vllm_kwargs``; for the server
    ``base_url``, ``api_key``, ``timeout``, ``max_concurrency`` and ``max_retries``."""
    engine: Qwen3Reranker | None = Field(default=None, exclude=True, repr=False)
    """A ready engine to use instead of building one from the settings above."""

    _ENGINE_SETTINGS: ClassVar[tuple[str, ...]] = (
        "model",
        "device",
        "dtype",
        "max_length",
        "max_batch_tokens",
        "show_progress",
        "backend",
        "backend_options",
    )
    _engine: LazyEngine[Qwen3Reranker] = PrivateAttr()

    def _build_engine(self) -> Qwen3Reranker:
        return Qwen3Reranker(
            self.model,
            device=self.device,
            dtype=self.dtype,
            max_length=self.max_length,
            instruction=self.instruction,
            max_batch_tokens=self.max_batch_tokens,
            show_progress=self.show_progress,
            backend=self.backend,
            **self.backend_options,
        )

    def _describe_engine(self, engine: Qwen3Reranker) -> None:
        self.model = str(engine.model_path)
        self.device = str(engine.device)
        self.dtype = dtype_name(engine.dtype)
        self.max_length = engine.max_length
        if "instruction" not in self.model_fields_set:
            self.instruction = engine.instruction
