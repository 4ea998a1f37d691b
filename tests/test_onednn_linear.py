"""CPU float32 models run their decoder's linear layers on oneDNN (qwen3_core.kernels):
same function as nn.Linear, and the engines' results equal those of torch's own kernel."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.kernels.onednn_linear import ENVIRONMENT_SWITCH, OneDnnLinear
from qwen3_core.testing import ModelPaths


def _model(engine: Qwen3Embedder | Qwen3Reranker) -> Any:
    return engine._backend._runner.loaded.model  # type: ignore[union-attr]


def _decoder_linears(engine: Qwen3Embedder | Qwen3Reranker) -> list[torch.nn.Module]:
    model = _model(engine)
    base = getattr(model, "get_decoder", lambda: model)()
    return [
        module
        for module in base.layers.modules()
        if isinstance(module, torch.nn.Linear | OneDnnLinear)
    ]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (1, 300)])
def test_onednn_linear_computes_nn_linear(bias: bool, shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 384, bias=bias)
    x = torch.randn(*shape, 512)[..., ::2]  # strided input, as a sliced activation can be
    exact = torch.nn.functional.linear(
        x.double(), linear.weight.double(), None if linear.bias is None else linear.bias.double()
    )
    with torch.inference_mode():
        out = OneDnnLinear(linear)(x)
    assert out.shape == exact.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), exact, atol=1e-5, rtol=1e-5)


def test_cpu_float32_models_use_onednn_linears(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    for engine in (embedder, reranker):
        linears = _decoder_linears(engine)
        assert linears and all(isinstance(m, OneDnnLinear) for m in linears)
    # The reranker reads two lm_head rows; that layer keeps its plain weight.
    assert isinstance(_model(reranker).lm_head, torch.nn.Linear)


def test_results_equal_torch_linears(
    test_models: ModelPaths,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENVIRONMENT_SWITCH, "torch")
    plain_embedder = Qwen3Embedder(test_models.embedding, device="cpu")
    plain_reranker = Qwen3Reranker(test_models.reranker, device="cpu")
    assert all(
        type(m) is torch.nn.Linear
        for engine in (plain_embedder, plain_reranker)
        for m in _decoder_linears(engine)
    )
    np.testing.assert_allclose(
        embedder.embed_documents(corpus), plain_embedder.embed_documents(corpus), atol=1e-5
    )
    np.testing.assert_allclose(
        embedder.embed_queries(queries), plain_embedder.embed_queries(queries), atol=1e-5
    )
    for query in queries:
        np.testing.assert_allclose(
            reranker.score(query, corpus), plain_reranker.score(query, corpus), atol=1e-5, rtol=0
        )


def test_unknown_switch_value_is_named(
    test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENVIRONMENT_SWITCH, "mkl")
    with pytest.raises(ValueError, match=f"{ENVIRONMENT_SWITCH}='mkl'"):
        Qwen3Embedder(test_models.embedding, device="cpu")
