"""Where the model runs: every backend gets the token ids built by ``qwen3_core.tokenization``."""

from typing import Literal, get_args

from qwen3_core.backends.base import (
    AsyncEmbeddingBackend,
    AsyncRerankBackend,
    EmbeddingBackend,
    RerankBackend,
)

Backend = Literal["transformers", "vllm", "server"]
BACKENDS: tuple[str, ...] = get_args(Backend)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "AsyncEmbeddingBackend",
    "AsyncRerankBackend",
    "Backend",
    "EmbeddingBackend",
    "RerankBackend",
    "check_backend",
]
