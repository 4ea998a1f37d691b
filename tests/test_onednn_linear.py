"""CPU float32 models run their decoder's linear layers on oneDNN (qwen3_core.kernels):
same function as nn.Linear, and the engines' results equal those of torch's own kernel. When
torch's private oneDNN ops are missing or wrong, at load or at run time, the engines fall back
to torch's kernel with one warning and the same results."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.kernels.onednn_linear import OneDnnLinear
from qwen3_core.testing import ModelPaths
from tests.options import CPU

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

# Each case runs in a process of its own: the probe's verdict and a failure hold for the whole
# process, as they do for a user's. torch's oneDNN op namespace is replaced there, before the
# first model (the probe meets the broken ops) or after the engines are built (a failure while
# running); the engines on oneDNN are compared with engines on torch's kernel in that process.
_FALLBACK = """
import json, sys
from types import SimpleNamespace

import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.kernels.onednn_linear import OneDnnLinear, use_onednn_linears

case, embedding, reranker = sys.argv[1:4]
corpus, queries = json.loads(sys.argv[4]), json.loads(sys.argv[5])
real = torch.ops.mkldnn


def wrong(*args):
    return real._linear_pointwise(*args) + 1e-3


def raising(*args):
    raise RuntimeError("could not create a primitive descriptor\\nfor the linear")


pack = real._reorder_linear_weight
broken = {
    "missing": SimpleNamespace(_reorder_linear_weight=pack),  # a torch build without the op
    "wrong numbers": SimpleNamespace(_reorder_linear_weight=pack, _linear_pointwise=wrong),
    "raises": SimpleNamespace(_reorder_linear_weight=pack, _linear_pointwise=raising),
}


def linears(engine):
    found = engine.loaded_model.layers.modules()
    return [m for m in found if isinstance(m, torch.nn.Linear | OneDnnLinear)]


def kernels(engines):
    return sorted({getattr(m, "kernel", type(m).__name__) for e in engines for m in linears(e)})


def results(embedder, reranker):
    return [
        embedder.embed_documents(corpus).tolist(),
        embedder.embed_queries(queries).tolist(),
        [list(map(float, reranker.score(query, corpus))) for query in queries],
    ]


plain = TransformersOptions(device="cpu", cpu_linear="torch")
want = results(Qwen3Embedder(embedding, backend=plain), Qwen3Reranker(reranker, backend=plain))
if case != "running":
    torch.ops.mkldnn = broken[case]
cpu = TransformersOptions(device="cpu")
engines = (Qwen3Embedder(embedding, backend=cpu), Qwen3Reranker(reranker, backend=cpu))
loaded = kernels(engines)
if case == "running":
    torch.ops.mkldnn = broken["raises"]
got, again = results(*engines), results(*engines)
later = torch.nn.Sequential()
later.layers = torch.nn.ModuleList([torch.nn.Linear(8, 4)])
use_onednn_linears(later)
print(json.dumps({
    "loaded": loaded,
    "options": [e.options.cpu_linear for e in engines],
    "after": kernels(engines),
    "same": got == want and again == want,
    "later": type(later.layers[0]).__name__,
}))
"""


def _fallback(case: str, test_models: ModelPaths, corpus: list[str], queries: list[str]) -> Any:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _FALLBACK,
            case,
            str(test_models.embedding),
            str(test_models.reranker),
            json.dumps(corpus),
            json.dumps(queries),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "torch's own kernel" in line]
    return json.loads(run.stdout.strip().splitlines()[-1]), lines


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("missing", "AttributeError"),
        ("wrong numbers", "differs from torch.nn.functional.linear"),
        ("raises", "RuntimeError: could not create a primitive descriptor"),
    ],
)
def test_failed_probe_keeps_torch_linears(
    broken: str, reason: str, test_models: ModelPaths, corpus: list[str], queries: list[str]
) -> None:
    """Broken before any model: the probe fails, models keep ``nn.Linear`` (and their options
    say so), the results are torch's, and one warning line says why."""
    report, lines = _fallback(broken, test_models, corpus, queries)
    assert report["loaded"] == report["after"] == ["Linear"]
    assert report["options"] == ["torch", "torch"] and report["same"]
    (line,) = lines
    assert reason in line and "unavailable" in line


def test_failure_while_running_falls_back_to_torch(
    test_models: ModelPaths, corpus: list[str], queries: list[str]
) -> None:
    """Broken after the load: every layer turns to torch's kernel at its next call (holding
    its plain weight instead of the packed one), the results are torch's, twice, one warning
    line says why, and models loaded afterwards are not swapped at all."""
    report, lines = _fallback("running", test_models, corpus, queries)
    assert report["loaded"] == ["onednn"] and report["options"] == ["onednn", "onednn"]
    assert report["after"] == ["torch"] and report["same"]
    (line,) = lines
    assert "RuntimeError: could not create a primitive descriptor" in line
    assert report["later"] == "Linear"


def test_bad_input_raises_torch_error_and_keeps_onednn() -> None:
    layer = OneDnnLinear(torch.nn.Linear(8, 4))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        layer(torch.randn(2, 5))
    assert layer.kernel == "onednn"  # the input was at fault, not oneDNN
