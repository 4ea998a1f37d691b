"""Internal: where the model runs: every backend gets the token ids built by
``qwen3_core.tokenization``.

Each backend is one module here that opens the model for its options
(``qwen3_core.backend_options``) and returns what embeds or scores token ids;
``qwen3_core.backends.registry`` says which module serves which options.
"""

from qwen3_core.backends.base import (
    AsyncEmbeddingBackend,
    AsyncRerankBackend,
    EmbeddingBackend,
    RerankBackend,
)

__all__ = [
    "AsyncEmbeddingBackend",
    "AsyncRerankBackend",
    "EmbeddingBackend",
    "RerankBackend",
]
