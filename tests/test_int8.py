"""The opt-in int8 CPU path: close to float32 (not equal), rejected where it does not apply,
and the float32 default untouched by it.

Both activation ranges run on every host: the full 8-bit range that VNNI CPUs use, and the
7-bit range of AVX2-only CPUs (``has_vnni`` turned off). The integer sums are exact either way,
so a VNNI host computes what an AVX2 host does. Bounds, measured on the tiny models with this
sample corpus: full range, embedding cosine to float32 >= 0.998, P(yes) within 0.032,
Spearman >= 0.997 per query; 7-bit, 0.994, 0.088 and 0.977; the same top document in both.
bfloat16 on the same inputs: cosine >= 0.9996, P(yes) within 0.036.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import (
    Qwen3Embedder,
    Qwen3Reranker,
    ServerOptions,
    TransformersOptions,
    VllmOptions,
)
from qwen3_core.decoder import Qwen3Decoder
from qwen3_core.kernels import int8
from qwen3_core.kernels.int8 import Int8Linear, int8_kernel, quantize_weight
from qwen3_core.loading import load_model
from qwen3_core.testing import ModelPaths
from qwen3_core.variants import tensor_shapes
from tests.options import CPU

INT8 = TransformersOptions(device="cpu", quantization="int8")


@pytest.fixture(scope="module", params=["full-range", "7-bit"])
def activation_range(request: pytest.FixtureRequest) -> Iterator[str]:
    """The activation range VNNI hosts use, then the one AVX2-only hosts use, on this host."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "7-bit":
            patch.setattr(int8, "has_vnni", lambda: False)
        yield request.param


@pytest.fixture(scope="module")
def int8_embedder(test_models: ModelPaths, activation_range: str) -> Qwen3Embedder:
    return Qwen3Embedder(test_models.embedding, backend=INT8)


@pytest.fixture(scope="module")
def int8_reranker(test_models: ModelPaths, activation_range: str) -> Qwen3Reranker:
    return Qwen3Reranker(test_models.reranker, backend=INT8)


def _model(engine: Qwen3Embedder | Qwen3Reranker) -> torch.nn.Module:
    model: torch.nn.Module = engine.loaded_model
    return model


def _full_range(engine: Qwen3Embedder | Qwen3Reranker) -> bool:
    layer = next(m for m in _model(engine).modules() if isinstance(m, Int8Linear))
    return not layer.reduce_range


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def test_int8_embeddings_are_close_to_float32(
    embedder: Qwen3Embedder, int8_embedder: Qwen3Embedder, corpus: list[str], queries: list[str]
) -> None:
    texts = corpus + queries + [d * 5 for d in corpus]
    exact, int8 = embedder.embed_documents(texts), int8_embedder.embed_documents(texts)
    assert int8.dtype == np.float32 and np.isfinite(int8).all()
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosine = (exact * int8).sum(axis=1)
    assert cosine.min() >= (0.995 if _full_range(int8_embedder) else 0.99), cosine.min()
    assert not np.array_equal(exact, int8)  # the int8 path did run


def test_int8_reranker_keeps_the_ranking(
    reranker: Qwen3Reranker,
    int8_reranker: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
) -> None:
    bound = 0.06 if _full_range(int8_reranker) else 0.12
    for query in [*queries, "gravity", "capital city"]:
        exact, quantized = reranker.score(query, corpus), int8_reranker.score(query, corpus)
        assert np.isfinite(quantized).all() and ((quantized >= 0) & (quantized <= 1)).all()
        assert np.abs(exact - quantized).max() <= bound, (query, np.abs(exact - quantized).max())
        assert _spearman(exact, quantized) >= 0.95, query
        assert exact.argmax() == quantized.argmax(), query


@pytest.mark.parametrize("kernel", ["fbgemm", "onednn"])
def test_an_int8_result_does_not_depend_on_the_other_texts_in_its_batch(
    test_models: ModelPaths,
    activation_range: str,
    corpus: list[str],
    kernel: Any,
) -> None:
    """A vector store built in batches and queried one text at a time compares vectors made
    alone and in company: each text's embedding and score must be the same either way (one
    activation scale per token). A long companion, whose activations are larger, is in every
    batch."""
    options = replace(INT8, int8_kernel=kernel)
    embedder = Qwen3Embedder(test_models.embedding, backend=options)
    reranker = Qwen3Reranker(test_models.reranker, backend=options)
    texts = [*corpus[:4], corpus[5] * 20]
    together = embedder.embed_documents(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(embedder.embed_documents([text])[0], together[i], atol=1e-4)
    query = "What is the capital of China?"
    together_logits = reranker.logits(query, texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(reranker.logits(query, [text]), together_logits[i], atol=1e-4)


def test_only_the_decoder_linears_are_quantized(
    test_models: ModelPaths, int8_embedder: Qwen3Embedder, int8_reranker: Qwen3Reranker
) -> None:
    engines = ((int8_embedder, test_models.embedding), (int8_reranker, test_models.reranker))
    for engine, folder in engines:
        model = _model(engine)
        assert not any(isinstance(m, torch.nn.Linear) for m in model.get_decoder().layers.modules())  # type: ignore[operator]
        # Every projection's rows in the files are in int8, whether alone or in a fused qkv /
        # gate-up GEMM.
        shapes = tensor_shapes(Path(folder)) or {}
        stored = sum(shape[0] for name, shape in shapes.items() if name.endswith("_proj.weight"))
        rows = sum(m.out_features for m in model.modules() if isinstance(m, Int8Linear))
        assert rows == stored > 0
        assert model.get_input_embeddings().weight.dtype == torch.float32  # type: ignore[operator]
        # No head is loaded: the reranker's two score rows are read from the file, in float32.
        assert not any("lm_head" in name for name, _ in model.named_parameters())


def test_float32_default_is_untouched(
    test_models: ModelPaths,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    int8_embedder: Qwen3Embedder,
    int8_reranker: Qwen3Reranker,
    corpus: list[str],
) -> None:
    before = embedder.embed_documents(corpus)
    float_model = load_model(test_models.embedding, "embedding", CPU).model
    assert float_model is _model(embedder) and float_model is not _model(int8_embedder)
    assert not any(isinstance(m, Int8Linear) for m in float_model.modules())
    again = Qwen3Embedder(test_models.embedding, backend=CPU)
    assert _model(again) is _model(embedder)
    np.testing.assert_array_equal(again.embed_documents(corpus), before)
    same = Qwen3Embedder(test_models.embedding, backend=INT8)
    assert _model(same) is _model(int8_embedder)  # int8 is cached too
    assert not any(isinstance(m, Int8Linear) for m in _model(reranker).modules())


def test_fused_int8_projections_equal_one_gemm_per_projection(test_models: ModelPaths) -> None:
    """The CPU decoder runs q/k/v and gate/up as one int8 GEMM each; transformers' model,
    quantized one linear at a time, gives the same hidden states bit for bit (integer sums,
    one activation scale per input either way)."""
    fused = load_model(test_models.embedding, "embedding", INT8)
    separate = load_model(test_models.embedding, "embedding", replace(INT8, decoder="transformers"))
    assert isinstance(fused.model, Qwen3Decoder) and type(separate.model).__name__ == "Qwen3Model"
    layer = fused.model.layers[0]
    assert isinstance(layer.self_attn.qkv_proj, Int8Linear)
    assert isinstance(layer.mlp.gate_up_proj, Int8Linear)
    ids = torch.randint(0, 151_000, (3, 29), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        mine = fused.model(input_ids=ids).last_hidden_state
        want = separate.model(input_ids=ids).last_hidden_state
    assert torch.equal(mine, want)


@pytest.mark.parametrize("shape", [(72, 96), (1000, 1024), (3, 300_000)])
def test_weights_are_quantized_as_torch_quantizes_them(shape: tuple[int, int]) -> None:
    """The loader's blocked quantization gives the integers and scales of torch's
    ``quantize_per_channel`` with the symmetric per-row scale written out here: rows in
    blocks and a last partial block, a row wider than a block, an all-zero row."""
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(shape, generator=generator) * torch.rand(shape[0], 1, generator=generator)
    weight[1] = 0
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of its quantized tensor types
        want = torch.quantize_per_channel(
            weight, scales, torch.zeros(shape[0], dtype=torch.long), 0, torch.qint8
        )
    got = quantize_weight(weight)
    assert torch.equal(got.int_repr(), want.int_repr())
    assert torch.equal(got.q_per_channel_scales(), want.q_per_channel_scales())
    assert int(got.int_repr().abs().max()) == 127


@pytest.mark.parametrize("kernel", ["fbgemm", "onednn"])
def test_each_int8_kernel_stays_close_to_float32(
    test_models: ModelPaths,
    embedder: Qwen3Embedder,
    corpus: list[str],
    kernel: Any,
) -> None:
    """Either kernel, chosen in the options, computes the int8 model: every layer on it, the
    engine's options saying so, the embeddings within the bound of the tests above, and
    torch's process-wide quantized engine left as the user had it."""
    before = torch.backends.quantized.engine
    engine = Qwen3Embedder(test_models.embedding, backend=replace(INT8, int8_kernel=kernel))
    assert torch.backends.quantized.engine == before
    layers = [m for m in _model(engine).modules() if isinstance(m, Int8Linear)]
    assert layers and {layer.kernel for layer in layers} == {kernel}
    assert engine.options.int8_kernel == kernel and engine.options.cpu_linear is None
    cosine = (embedder.embed_documents(corpus) * engine.embed_documents(corpus)).sum(axis=1)
    assert cosine.min() >= (0.995 if _full_range(engine) else 0.99), cosine.min()


@pytest.mark.parametrize("duplicate", [copy.deepcopy, pickle.dumps], ids=["deepcopy", "pickle"])
def test_an_int8_model_is_not_copied(
    int8_embedder: Qwen3Embedder, duplicate: Callable[[object], object]
) -> None:
    """Its packed weights keep no plain copy to rebuild from: a clear refusal, not a crash."""
    with pytest.raises(TypeError, match="cannot be copied or pickled"):
        duplicate(_model(int8_embedder))


def test_the_default_int8_kernel_follows_the_cpu(int8_embedder: Qwen3Embedder) -> None:
    """oneDNN's where the CPU has AMX int8 tiles (2-3x fbgemm's speed there), else fbgemm's."""
    with open("/proc/cpuinfo") as handle:
        amx = "amx_int8" in handle.read().split()
    assert int8_kernel() == ("onednn" if amx else "fbgemm")
    assert int8_embedder.options.int8_kernel == int8_kernel()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"quantization": "int8", "int8_kernel": "mkl"}, "unknown int8_kernel 'mkl'"),
        ({"int8_kernel": "fbgemm"}, "applies with quantization='int8' only"),
        ({"quantization": "int8", "cpu_linear": "torch"}, "choose int8_kernel instead"),
    ],
)
def test_int8_kernel_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformersOptions(device="cpu", **settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"device": "cuda"}, "runs on CPU only"),
        ({"device": "cuda:1"}, "runs on CPU only"),
        ({"device": "cpu", "dtype": "bfloat16"}, "works from float32 weights"),
        ({"device": "cpu", "dtype": "float16"}, "works from float32 weights"),
    ],
)
def test_int8_is_rejected_where_it_does_not_apply(
    test_models: ModelPaths, settings: dict[str, object], message: str
) -> None:
    for engine, folder in (
        (Qwen3Embedder, test_models.embedding),
        (Qwen3Reranker, test_models.reranker),
    ):
        with pytest.raises(ValueError, match=message):
            engine(folder, backend=TransformersOptions(quantization="int8", **settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        lambda: VllmOptions(quantization="int8"),  # type: ignore[call-arg]
        lambda: ServerOptions(base_url="http://localhost:1", quantization="int8"),  # type: ignore[call-arg]
    ],
    ids=["vllm", "server"],
)
def test_int8_is_for_the_transformers_backend_only(options: Callable[[], object]) -> None:
    """Only TransformersOptions has quantization: for vLLM or a server it cannot be written."""
    with pytest.raises(TypeError, match="quantization"):
        options()


def test_unknown_quantization_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        TransformersOptions(device="cpu", quantization="int4")  # type: ignore[arg-type]
