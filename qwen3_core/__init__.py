"""qwen3-rag's engine: Qwen3-Embedding and Qwen3-Reranker with the official semantics."""

from qwen3_core.embedder import Qwen3Embedder
from qwen3_core.loading import ModelKindError, ModelNotFoundError
from qwen3_core.prompts import DEFAULT_INSTRUCTION
from qwen3_core.reranker import Qwen3Reranker, RerankResult

__all__ = [
    "DEFAULT_INSTRUCTION",
    "ModelKindError",
    "ModelNotFoundError",
    "Qwen3Embedder",
    "Qwen3Reranker",
    "RerankResult",
]
