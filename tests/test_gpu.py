"""GPU path: bfloat16 within 2e-2 of float32. Skipped without CUDA (CI has none)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.testing import ModelPaths, VariantPaths
from tests.options import CPU

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FLOAT32 = TransformersOptions(dtype="float32")  # on the default device: CUDA here


def test_embedder_bfloat16_close_to_float32(
    test_models: ModelPaths, embedder: Qwen3Embedder, corpus: list[str]
) -> None:
    gpu = Qwen3Embedder(test_models.embedding, backend=TransformersOptions(dtype="bfloat16"))
    assert gpu.device is not None and gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16
    np.testing.assert_allclose(
        gpu.embed_documents(corpus), embedder.embed_documents(corpus), atol=2e-2, rtol=0
    )


def test_reranker_bfloat16_close_to_float32(
    test_models: ModelPaths, reranker: Qwen3Reranker, corpus: list[str], queries: list[str]
) -> None:
    gpu = Qwen3Reranker(test_models.reranker, backend=TransformersOptions(dtype="bfloat16"))
    for query in queries:
        np.testing.assert_allclose(
            gpu.score(query, corpus), reranker.score(query, corpus), atol=2e-2, rtol=0
        )


def test_gpu_float32_matches_cpu(
    test_models: ModelPaths, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    gpu = Qwen3Reranker(test_models.reranker, backend=FLOAT32)
    np.testing.assert_allclose(
        gpu.score("什么是重力？", corpus), reranker.score("什么是重力？", corpus), atol=1e-4, rtol=0
    )


def test_defaults_read_from_the_device(test_models: ModelPaths) -> None:
    """dtype=None: bfloat16 from compute capability 8.0, float16 below; the batch budget
    follows the memory left free by the model."""
    from qwen3_core.devices import default_dtype

    gpu = Qwen3Reranker(test_models.reranker)
    capability = torch.cuda.get_device_capability(gpu.device)
    assert gpu.dtype == default_dtype("cuda", capability)
    budget = gpu.max_batch_tokens
    assert budget is not None and 512 <= budget <= 65536


def test_variants_on_the_gpu(test_variants: VariantPaths, corpus: list[str]) -> None:
    for name, folder in test_variants.rerankers.items():
        cpu = Qwen3Reranker(folder, backend=CPU).score("什么是重力？", corpus)
        gpu = Qwen3Reranker(folder, backend=FLOAT32).score("什么是重力？", corpus)
        np.testing.assert_allclose(gpu, cpu, atol=1e-4, rtol=0, err_msg=name)
