"""CPU float32 models run their decoder's linear layers on oneDNN (qwen3_core.kernels):
same function as nn.Linear, and the engines' results equal those of torch's own kernel. When
torch's private oneDNN ops are missing or wrong, at load or at run time, the engines fall back
to torch's kernel with one warning and the same results."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.kernels import onednn_linear
from qwen3_core.kernels.onednn_linear import OneDnnLinear, use_onednn_linears
from qwen3_core.testing import ModelPaths
from tests.faulty_models import link_or_copy
from tests.options import CPU

REAL_OPS = torch.ops.mkldnn
TORCH_LINEARS = replace(CPU, cpu_linear="torch")


def _model(engine: Qwen3Embedder | Qwen3Reranker) -> Any:
    return engine.loaded_model


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
    # The reranker's two score rows are read from the file: no lm_head is loaded at all.
    assert not hasattr(_model(reranker), "lm_head")


def test_results_equal_torch_linears(
    test_models: ModelPaths,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
) -> None:
    plain_embedder = Qwen3Embedder(test_models.embedding, backend=TORCH_LINEARS)
    plain_reranker = Qwen3Reranker(test_models.reranker, backend=TORCH_LINEARS)
    assert plain_embedder.options.cpu_linear == "torch" and embedder.options.cpu_linear == "onednn"
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


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cpu_linear": "mkl"}, "unknown cpu_linear 'mkl'"),
        ({"cpu_linear": "torch", "dtype": "bfloat16"}, "applies on CPU in float32 only"),
        ({"cpu_linear": "onednn", "device": "cuda"}, "applies on CPU in float32 only"),
    ],
)
def test_cpu_linear_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(CPU, **settings)


# --- Fallback to torch's kernel -------------------------------------------------------------


@pytest.fixture
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module's once-per-process probe and failure record, as in a new process; the
    session's real state (and the shared engines on oneDNN) come back afterwards."""
    monkeypatch.setattr(onednn_linear, "_health", onednn_linear._Health())
    yield


@pytest.fixture
def own_models(test_models: ModelPaths, tmp_path: Path) -> ModelPaths:
    """Links to the tiny models under new paths: the loading cache gives engines made from them
    models of their own, never the session's shared ones."""
    for source, target in ((test_models.embedding, "embedding"), (test_models.reranker, "rr")):
        shutil.copytree(source, tmp_path / target, copy_function=link_or_copy)
    return ModelPaths(embedding=tmp_path / "embedding", reranker=tmp_path / "rr")


@pytest.fixture(scope="module")
def torch_results(test_models: ModelPaths, corpus: list[str], queries: list[str]) -> Results:
    """The engines' results on torch's own kernel (``cpu_linear="torch"``)."""
    engines = (
        Qwen3Embedder(test_models.embedding, backend=TORCH_LINEARS),
        Qwen3Reranker(test_models.reranker, backend=TORCH_LINEARS),
    )
    assert all(type(m) is torch.nn.Linear for e in engines for m in _decoder_linears(e))
    return _results(*engines, corpus, queries)


Results = tuple[np.ndarray, np.ndarray, list[list[float]]]


def _results(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, corpus: list[str], queries: list[str]
) -> Results:
    return (
        embedder.embed_documents(corpus),
        embedder.embed_queries(queries),
        [list(reranker.score(query, corpus)) for query in queries],
    )


def _assert_same(got: Results, expected: Results) -> None:
    # Both ran torch's kernel on the same weights: equal, not merely close.
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _fallback_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "qwen3_core" and "torch's own kernel" in r.getMessage()
    ]


def _wrong_linear(*args: Any) -> torch.Tensor:
    out: torch.Tensor = REAL_OPS._linear_pointwise(*args)
    return out + 1e-3


def _raising_linear(*args: Any) -> torch.Tensor:
    raise RuntimeError("could not create a primitive descriptor\nfor the linear")


BROKEN_OPS: dict[str, tuple[Callable[[], object], str]] = {
    # A torch build without the op: the lookup itself fails.
    "missing": (
        lambda: SimpleNamespace(_reorder_linear_weight=REAL_OPS._reorder_linear_weight),
        "AttributeError",
    ),
    "wrong numbers": (
        lambda: SimpleNamespace(
            _reorder_linear_weight=REAL_OPS._reorder_linear_weight, _linear_pointwise=_wrong_linear
        ),
        "differs from torch.nn.functional.linear",
    ),
    "raises": (
        lambda: SimpleNamespace(
            _reorder_linear_weight=REAL_OPS._reorder_linear_weight,
            _linear_pointwise=_raising_linear,
        ),
        "RuntimeError: could not create a primitive descriptor",
    ),
}


@pytest.mark.parametrize("broken", list(BROKEN_OPS))
def test_failed_probe_keeps_torch_linears(
    broken: str,
    fresh_process_state: None,
    own_models: ModelPaths,
    torch_results: Results,
    corpus: list[str],
    queries: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_ops, reason = BROKEN_OPS[broken]
    monkeypatch.setattr(onednn_linear, "_mkldnn_ops", make_ops())
    with caplog.at_level(logging.INFO, logger="qwen3_core"):
        engines = (
            Qwen3Embedder(own_models.embedding, backend=CPU),
            Qwen3Reranker(own_models.reranker, backend=CPU),
        )
        results = _results(*engines, corpus, queries)
    assert all(type(m) is torch.nn.Linear for e in engines for m in _decoder_linears(e))
    _assert_same(results, torch_results)
    (line,) = _fallback_lines(caplog)
    assert reason in line and "unavailable" in line and "\n" not in line


def test_failure_while_running_falls_back_to_torch(
    fresh_process_state: None,
    own_models: ModelPaths,
    torch_results: Results,
    corpus: list[str],
    queries: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="qwen3_core"):
        engines = (
            Qwen3Embedder(own_models.embedding, backend=CPU),
            Qwen3Reranker(own_models.reranker, backend=CPU),
        )
        linears = [m for e in engines for m in _decoder_linears(e)]
        assert linears and all(isinstance(m, OneDnnLinear) for m in linears)
        # oneDNN breaks after the load: every call of its linear raises from now on.
        monkeypatch.setattr(onednn_linear, "_mkldnn_ops", BROKEN_OPS["raises"][0]())
        results = _results(*engines, corpus, queries)
        again = _results(*engines, corpus, queries)
    _assert_same(results, torch_results)
    _assert_same(again, torch_results)
    (line,) = _fallback_lines(caplog)
    assert "RuntimeError: could not create a primitive descriptor" in line and "\n" not in line
    # Each layer now holds its plain weight instead of the packed one: still one copy.
    for module in linears:
        assert isinstance(module, OneDnnLinear)
        assert module._packed is None and module._weight is not None
        assert module._weight.shape == (module.out_features, module.in_features)
    # Models loaded after the failure are not swapped at all.
    model = _LayeredModel()
    assert use_onednn_linears(model) is model and type(model.layers[0]) is torch.nn.Linear


class _LayeredModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 4)])


def test_bad_input_raises_torch_error_and_keeps_onednn(fresh_process_state: None) -> None:
    layer = OneDnnLinear(torch.nn.Linear(8, 4))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        layer(torch.randn(2, 5))
    assert layer._packed is not None and onednn_linear._health.failure is None
