"""Offline test models: tiny random Qwen3 checkpoints with the real Qwen3 tokenizer.

``python -m qwen3_core.testing [DIR] [--shape tiny|small|0.6b|4b|8b] [--variants]`` writes an
embedding model and a reranker under DIR (default: ``models_cache_folder()``, the one cache
the tests, ``qwen3-rag demo --tiny``, the notebooks and the benchmarks share), and with
``--variants`` every checkpoint variant users download (``qwen3_core.testing.variants``).
Needs the ``testing`` extra (``pip install 'qwen3-rag[testing]'``).
"""

from qwen3_core.testing.cache import CACHE_VARIABLE, models_cache_folder
from qwen3_core.testing.models import (
    SHAPES,
    ModelPaths,
    ModelShape,
    build_embedding_model,
    build_reranker_model,
    build_test_models,
)
from qwen3_core.testing.variants import (
    EMBEDDING_VARIANTS,
    RERANKER_VARIANTS,
    VariantPaths,
    build_variants,
)
from qwen3_core.testing.vllm_server import VllmServer, free_port

__all__ = [
    "CACHE_VARIABLE",
    "EMBEDDING_VARIANTS",
    "RERANKER_VARIANTS",
    "SHAPES",
    "ModelPaths",
    "ModelShape",
    "VariantPaths",
    "VllmServer",
    "build_embedding_model",
    "build_reranker_model",
    "build_test_models",
    "build_variants",
    "free_port",
    "models_cache_folder",
]
