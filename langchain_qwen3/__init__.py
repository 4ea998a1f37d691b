"""LangChain integration for qwen3-rag: Qwen3-Embedding and Qwen3-Reranker as drop-in
``Embeddings``, document compressor and cross-encoder. Needs only ``langchain-core``."""

from langchain_qwen3.cross_encoder import Qwen3CrossEncoder
from langchain_qwen3.embeddings import Qwen3Embeddings
from langchain_qwen3.rerank import Qwen3Rerank

__all__ = ["Qwen3CrossEncoder", "Qwen3Embeddings", "Qwen3Rerank"]
