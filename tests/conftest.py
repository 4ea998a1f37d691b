"""Shared fixtures: the offline tiny Qwen3 models, built once and cached between runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths, build_test_models

REPO = Path(__file__).resolve().parents[1]

# Seed 003's sample corpus and queries, used across the suites.
from qwen3_core.demo.corpus import SAMPLE_DOCUMENTS, SAMPLE_QUERIES  # noqa: E402


@pytest.fixture(scope="session")
def test_models() -> ModelPaths:
    root = Path(os.environ.get("QWEN3_RAG_TEST_MODELS", REPO / ".test-models"))
    return build_test_models(root, "tiny")


@pytest.fixture(scope="session")
def embedder(test_models: ModelPaths) -> Qwen3Embedder:
    return Qwen3Embedder(test_models.embedding, device="cpu")


@pytest.fixture(scope="session")
def reranker(test_models: ModelPaths) -> Qwen3Reranker:
    return Qwen3Reranker(test_models.reranker, device="cpu")


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return list(SAMPLE_DOCUMENTS)


@pytest.fixture(scope="session")
def queries() -> list[str]:
    return list(SAMPLE_QUERIES)
