"""LlamaIndex integration for qwen3-rag: Qwen3-Embedding as a ``BaseEmbedding`` and
Qwen3-Reranker as a node postprocessor. Needs only ``llama-index-core``."""

from qwen3_core.extras import require_extra

# Before the adapters' imports: a missing llama-index-core is one message saying what to do.
require_extra("llamaindex_qwen3", "llamaindex")

from llamaindex_qwen3.embedding import Qwen3Embedding  # noqa: E402
from llamaindex_qwen3.multimodal import Qwen3VLEmbedding, Qwen3VLRerank  # noqa: E402
from llamaindex_qwen3.rerank import Qwen3Rerank  # noqa: E402

__all__ = ["Qwen3Embedding", "Qwen3Rerank", "Qwen3VLEmbedding", "Qwen3VLRerank"]
