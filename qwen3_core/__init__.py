"""qwen3-rag's engine: Qwen3-Embedding and Qwen3-Reranker with the official semantics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen3_core.exports import lazy_exports
from qwen3_core.threads import wait_passively_unless_set

# First, before anything here can import torch, whose OpenMP runtime reads the wait policy once
# as it loads: its threads then sleep while they wait instead of spinning, which on cores
# shared with other work (any RAG service's) cost several times the time. A policy the user
# set is kept, and a process that loaded torch first is left as it is (docs/performance.md).
wait_passively_unless_set()

if TYPE_CHECKING:
    from qwen3_core.backend_options import (
        OpenVINOOptions,
        ServerOptions,
        TransformersOptions,
        VllmOptions,
    )
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.errors import (
        ImageInputError,
        ModelFilesChangedError,
        ModelKindError,
        ModelNotFoundError,
        Qwen3RagError,
        ServerError,
    )
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import MultimodalRerankResult, Qwen3VLReranker
    from qwen3_core.prompts import DEFAULT_INSTRUCTION
    from qwen3_core.reranker import Qwen3Reranker, RerankCall, RerankResult

__all__ = [
    "DEFAULT_INSTRUCTION",
    "ImageInputError",
    "ModelFilesChangedError",
    "ModelKindError",
    "ModelNotFoundError",
    "MultimodalRerankResult",
    "OpenVINOOptions",
    "Qwen3Embedder",
    "Qwen3RagError",
    "Qwen3Reranker",
    "Qwen3VLEmbedder",
    "Qwen3VLReranker",
    "RerankCall",
    "RerankResult",
    "ServerError",
    "ServerOptions",
    "TransformersOptions",
    "VllmOptions",
]

# The public names are imported on first use: a light submodule (the command line checks its
# arguments before anything else) must not pay for importing torch.
_HOMES = {
    "DEFAULT_INSTRUCTION": "qwen3_core.prompts",
    "ModelFilesChangedError": "qwen3_core.errors",
    "ImageInputError": "qwen3_core.errors",
    "ModelKindError": "qwen3_core.errors",
    "ModelNotFoundError": "qwen3_core.errors",
    "Qwen3RagError": "qwen3_core.errors",
    "ServerError": "qwen3_core.errors",
    "OpenVINOOptions": "qwen3_core.backend_options",
    "Qwen3Embedder": "qwen3_core.embedder",
    "Qwen3Reranker": "qwen3_core.reranker",
    "MultimodalRerankResult": "qwen3_core.multimodal.reranker",
    "Qwen3VLEmbedder": "qwen3_core.multimodal.embedder",
    "Qwen3VLReranker": "qwen3_core.multimodal.reranker",
    "RerankCall": "qwen3_core.reranker",
    "RerankResult": "qwen3_core.reranker",
    "ServerOptions": "qwen3_core.backend_options",
    "TransformersOptions": "qwen3_core.backend_options",
    "VllmOptions": "qwen3_core.backend_options",
}


__getattr__, __dir__ = lazy_exports("qwen3_core", _HOMES, globals())
