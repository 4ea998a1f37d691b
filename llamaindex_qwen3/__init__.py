"""LlamaIndex integration for qwen3-rag: Qwen3-Embedding as a ``BaseEmbedding`` and
Qwen3-Reranker as a node postprocessor. Needs only ``llama-index-core``."""

from llamaindex_qwen3.embedding import Qwen3Embedding
from llamaindex_qwen3.rerank import Qwen3Rerank

__all__ = ["Qwen3Embedding", "Qwen3Rerank"]
