"""LangChain integration for qwen3-rag: Qwen3-Embedding and Qwen3-Reranker as drop-in
``Embeddings``, document compressor and cross-encoder. Needs only ``langchain-core``."""

from qwen3_core.extras import refuse_shadowing_distributions, require_extra

# Before the adapters' imports: a missing langchain-core, or PyPI's unrelated
# langchain-qwen3 in place of these files, is one message saying what to do.
refuse_shadowing_distributions("langchain_qwen3", "langchain")
require_extra("langchain_qwen3", "langchain")

from langchain_qwen3.cross_encoder import Qwen3CrossEncoder  # noqa: E402
from langchain_qwen3.embeddings import Qwen3Embeddings  # noqa: E402
from langchain_qwen3.multimodal import Qwen3VLEmbeddings, Qwen3VLRerank  # noqa: E402
from langchain_qwen3.rerank import Qwen3Rerank  # noqa: E402

__all__ = [
    "Qwen3CrossEncoder",
    "Qwen3Embeddings",
    "Qwen3Rerank",
    "Qwen3VLEmbeddings",
    "Qwen3VLRerank",
]
