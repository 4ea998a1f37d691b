"""GPU path: bfloat16 within 2e-2 of float32. Skipped without CUDA (CI has none)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_embedder_bfloat16_close_to_float32(
    test_models: ModelPaths, embedder: Qwen3Embedder, corpus: list[str]
) -> None:
    gpu = Qwen3Embedder(test_models.embedding)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16
    np.testing.assert_allclose(
        gpu.embed_documents(corpus), embedder.embed_documents(corpus), atol=2e-2, rtol=0
    )


def test_reranker_bfloat16_close_to_float32(
    test_models: ModelPaths, reranker: Qwen3Reranker, corpus: list[str], queries: list[str]
) -> None:
    gpu = Qwen3Reranker(test_models.reranker)
    for query in queries:
        np.testing.assert_allclose(
            gpu.score(query, corpus), reranker.score(query, corpus), atol=2e-2, rtol=0
        )


def test_gpu_float32_matches_cpu(
    test_models: ModelPaths, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    gpu = Qwen3Reranker(test_models.reranker, dtype="float32")
    np.testing.assert_allclose(
        gpu.score("什么是重力？", corpus), reranker.score("什么是重力？", corpus), atol=1e-4, rtol=0
    )
