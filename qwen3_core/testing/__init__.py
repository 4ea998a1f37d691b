"""Offline test models: tiny random Qwen3 checkpoints with the real Qwen3 tokenizer.

``python -m qwen3_core.testing [DIR] [--shape SHAPE] [--variants]`` writes an embedding model
and a reranker under DIR (default: ``models_cache_folder()``, the one cache the tests,
``qwen3-rag demo --tiny``, the notebooks and the benchmarks share), and with ``--variants``
every checkpoint variant users download (``qwen3_core.testing.variants``). Needs the
``testing`` extra (from a clone of qwen3-rag: ``pip install -e ".[testing]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen3_core.exports import lazy_exports

if TYPE_CHECKING:
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
    from qwen3_core.testing.vl_models import (
        VL_SHAPES,
        VLModelPaths,
        VLShape,
        build_vl_embedding_model,
        build_vl_reranker_model,
        build_vl_test_models,
    )
    from qwen3_core.testing.vllm_server import VllmServer, free_port

__all__ = [
    "CACHE_VARIABLE",
    "EMBEDDING_VARIANTS",
    "RERANKER_VARIANTS",
    "SHAPES",
    "VL_SHAPES",
    "ModelPaths",
    "ModelShape",
    "VLModelPaths",
    "VLShape",
    "VariantPaths",
    "VllmServer",
    "build_embedding_model",
    "build_reranker_model",
    "build_test_models",
    "build_variants",
    "build_vl_embedding_model",
    "build_vl_reranker_model",
    "build_vl_test_models",
    "free_port",
    "models_cache_folder",
]

# Imported on first use: `python -m qwen3_core.testing` runs this file first, and without the
# testing extra it must still get as far as saying what to install.
_HOMES = {
    "CACHE_VARIABLE": "qwen3_core.testing.cache",
    "models_cache_folder": "qwen3_core.testing.cache",
    "SHAPES": "qwen3_core.testing.models",
    "ModelPaths": "qwen3_core.testing.models",
    "ModelShape": "qwen3_core.testing.models",
    "build_embedding_model": "qwen3_core.testing.models",
    "build_reranker_model": "qwen3_core.testing.models",
    "build_test_models": "qwen3_core.testing.models",
    "EMBEDDING_VARIANTS": "qwen3_core.testing.variants",
    "RERANKER_VARIANTS": "qwen3_core.testing.variants",
    "VariantPaths": "qwen3_core.testing.variants",
    "build_variants": "qwen3_core.testing.variants",
    "VL_SHAPES": "qwen3_core.testing.vl_models",
    "VLModelPaths": "qwen3_core.testing.vl_models",
    "VLShape": "qwen3_core.testing.vl_models",
    "build_vl_embedding_model": "qwen3_core.testing.vl_models",
    "build_vl_reranker_model": "qwen3_core.testing.vl_models",
    "build_vl_test_models": "qwen3_core.testing.vl_models",
    "VllmServer": "qwen3_core.testing.vllm_server",
    "free_port": "qwen3_core.testing.vllm_server",
}

__getattr__, __dir__ = lazy_exports("qwen3_core.testing", _HOMES, globals())
