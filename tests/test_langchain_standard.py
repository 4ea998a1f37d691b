"""LangChain's standard embeddings suites (langchain-tests) on Qwen3Embeddings."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_qwen3 import Qwen3Embeddings
from qwen3_core.testing import ModelPaths, build_test_models
from tests.options import CPU


def tiny_models() -> ModelPaths:
    """The conftest's tiny models: the suites read their parameters from a property, where
    fixtures cannot be asked for. A built copy is reused, so this is cheap."""
    return build_test_models()


@pytest.mark.disable_socket  # LangChain runs unit suites offline: construction must not connect
class TestQwen3EmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[Qwen3Embeddings]:
        return Qwen3Embeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        # The real hub id, not the tiny folder: constructing loads nothing and fetches nothing.
        return {"model": "Qwen/Qwen3-Embedding-0.6B", "dimensions": 256, "max_length": 512}


# The session `embedder` fixture holds the tiny embedding weights, so each test's fresh
# adapter finds them in the engine's cache instead of loading them again.
@pytest.mark.usefixtures("embedder")
class TestQwen3EmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Qwen3Embeddings]:
        return Qwen3Embeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": str(tiny_models().embedding), "backend": CPU}
