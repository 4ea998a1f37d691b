"""qwen3-rag's engine: Qwen3-Embedding and Qwen3-Reranker with the official semantics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen3_core.exports import lazy_exports

if TYPE_CHECKING:
    from qwen3_core.backend_options import (
        OpenVINOOptions,
        ServerOptions,
        TransformersOptions,
        VllmOptions,
    )
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.hub import ModelNotFoundError
    from qwen3_core.prompts import DEFAULT_INSTRUCTION
    from qwen3_core.reranker import Qwen3Reranker, RerankCall, RerankResult
    from qwen3_core.variants import ModelKindError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "ModelKindError",
    "ModelNotFoundError",
    "OpenVINOOptions",
    "Qwen3Embedder",
    "Qwen3Reranker",
    "RerankCall",
    "RerankResult",
    "ServerOptions",
    "TransformersOptions",
    "VllmOptions",
]

# The public names are imported on first use: a light submodule (the command line checks its
# arguments before anything else) must not pay for importing torch.
_HOMES = {
    "DEFAULT_INSTRUCTION": "qwen3_core.prompts",
    "ModelKindError": "qwen3_core.variants",
    "ModelNotFoundError": "qwen3_core.hub",
    "OpenVINOOptions": "qwen3_core.backend_options",
    "Qwen3Embedder": "qwen3_core.embedder",
    "Qwen3Reranker": "qwen3_core.reranker",
    "RerankCall": "qwen3_core.reranker",
    "RerankResult": "qwen3_core.reranker",
    "ServerOptions": "qwen3_core.backend_options",
    "TransformersOptions": "qwen3_core.backend_options",
    "VllmOptions": "qwen3_core.backend_options",
}


__getattr__, __dir__ = lazy_exports("qwen3_core", _HOMES, globals())
