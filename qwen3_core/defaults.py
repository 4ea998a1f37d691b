"""Internal: the defaults and bounds of the settings the engines and both adapters share, in one
place so that they cannot drift apart."""

from __future__ import annotations

from typing import Literal

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_RERANKER_MODEL = "Qwen/Qwen3-Reranker-0.6B"

MAX_LENGTH = 8192
"""Longest input in tokens, by default: Qwen3-Embedding's and Qwen3-Reranker's own limit."""
ModelKind = Literal["embedding", "reranker"]
"""The two kinds of Qwen3 retrieval model."""

MIN_MAX_LENGTH: dict[ModelKind, int] = {"embedding": 2, "reranker": 1}
"""The smallest ``max_length`` accepted: an embedding input needs a token and
``<|endoftext|>`` (the reranker's template length is checked against its tokenizer)."""

TOP_N = 3
"""Documents a reranker adapter returns, by default."""
MIN_TOP_N = 0
"""``top_n=0`` is allowed and returns nothing."""

EMBED_BATCH_SIZE = 256
"""Texts per engine call from LlamaIndex (whose own default of 10 starves a GPU); the engine
splits each call into token-budget batches itself."""
MAX_EMBED_BATCH_SIZE = 2048

CHUNK_OVERLAP = 64
"""Tokens shared by neighbouring windows of a long document, when the reranker scores it
window by window (``long_documents="chunk"``)."""
MAX_CHUNKS_PER_DOCUMENT = 8
"""Most windows the reranker scores per document, by default: a bound on the cost of one
very long document."""

DEFAULT_VL_EMBEDDING_MODEL = "Qwen/Qwen3-VL-Embedding-2B"
DEFAULT_VL_RERANKER_MODEL = "Qwen/Qwen3-VL-Reranker-2B"
VL_EMBEDDING_MAX_LENGTH = 8192
"""The Qwen3-VL embedder's longest input in tokens, image tokens included."""
VL_RERANKER_MAX_LENGTH = 10240
"""The Qwen3-VL reranker's longest prompt in tokens, image tokens included."""
REMOTE_IMAGE_MAX_BYTES = 20 * 1024 * 1024
"""The largest remote image downloaded, when remote images are allowed."""
REMOTE_IMAGE_TIMEOUT = 10.0
"""Seconds for a remote image's connection and for each read."""
