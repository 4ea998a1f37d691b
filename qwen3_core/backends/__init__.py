"""Where the model runs: every backend gets the token ids built by ``qwen3_core.tokenization``.

Each backend has its own options (``qwen3_core.backends.options``), and one factory
(``qwen3_core.backends.factory``) builds the backend from them.
"""

from qwen3_core.backends.base import (
    AsyncEmbeddingBackend,
    AsyncRerankBackend,
    EmbeddingBackend,
    RerankBackend,
)
from qwen3_core.backends.options import (
    BACKENDS,
    BackendChoice,
    BackendName,
    BackendOptions,
    OpenVINOOptions,
    ServerOptions,
    TransformersOptions,
    VllmOptions,
)

__all__ = [
    "BACKENDS",
    "AsyncEmbeddingBackend",
    "AsyncRerankBackend",
    "BackendChoice",
    "BackendName",
    "BackendOptions",
    "EmbeddingBackend",
    "OpenVINOOptions",
    "RerankBackend",
    "ServerOptions",
    "TransformersOptions",
    "VllmOptions",
]
