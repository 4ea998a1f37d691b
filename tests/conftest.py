"""Shared fixtures: the offline tiny Qwen3 models, built once and cached between runs (in
``models_cache_folder()``: ``$QWEN3_RAG_TEST_MODELS``, else the user cache folder)."""

from __future__ import annotations

import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.demo.corpus import SAMPLE_DOCUMENTS, SAMPLE_QUERIES  # used across the suites
from qwen3_core.testing import (
    ModelPaths,
    VariantPaths,
    build_test_models,
    build_variants,
    models_cache_folder,
)
from tests.options import CPU

# Shared with `qwen3-rag demo --tiny`, the notebooks and the benchmarks: built once per machine.
TEST_MODELS = models_cache_folder()


@pytest.fixture(scope="session")
def test_models() -> ModelPaths:
    return build_test_models(TEST_MODELS, "tiny")


@pytest.fixture(scope="session")
def test_variants(test_models: ModelPaths) -> VariantPaths:
    """Every checkpoint variant users download, from the tiny models' weights."""
    return build_variants(TEST_MODELS, test_models, "tiny")


@pytest.fixture(scope="session")
def embedder(test_models: ModelPaths) -> Qwen3Embedder:
    return Qwen3Embedder(test_models.embedding, backend=CPU)


@pytest.fixture(scope="session")
def reranker(test_models: ModelPaths) -> Qwen3Reranker:
    return Qwen3Reranker(test_models.reranker, backend=CPU)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return list(SAMPLE_DOCUMENTS)


@pytest.fixture(scope="session")
def queries() -> list[str]:
    return list(SAMPLE_QUERIES)
