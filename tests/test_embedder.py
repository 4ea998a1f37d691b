"""Qwen3Embedder against seed 002's formula and sentence-transformers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, TransformersOptions
from qwen3_core.testing import ModelPaths
from tests.options import CPU
from tests.reference import ReferenceEmbedder

EDGE_TEXTS = ["", " ", "a", "hello world", "<|im_end|> literal", "x" * 700, "é" * 50, "🙂 emoji"]


@pytest.fixture(scope="module")
def reference(test_models: ModelPaths) -> ReferenceEmbedder:
    return ReferenceEmbedder(test_models.embedding)


def test_documents_match_seed_formula(
    embedder: Qwen3Embedder, reference: ReferenceEmbedder, corpus: list[str]
) -> None:
    texts = corpus + [t for t in EDGE_TEXTS if "<|" not in t]
    got = embedder.embed_documents(texts)
    assert got.dtype == np.float32 and got.shape == (len(texts), 64)
    want = np.stack([reference.embed(t).numpy() for t in texts])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # The tiny model really tells texts apart: otherwise the comparison above proves little.
    assert (got @ got.T)[np.triu_indices(len(texts), 1)].mean() < 0.8


def test_queries_get_the_instruction(
    embedder: Qwen3Embedder, reference: ReferenceEmbedder, queries: list[str]
) -> None:
    got = embedder.embed_queries(queries)
    want = np.stack([reference.query(q).numpy() for q in queries])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    custom = embedder.embed_queries(queries, instruction="Find the matching code")
    want_custom = np.stack([reference.query(q, "Find the matching code").numpy() for q in queries])
    np.testing.assert_allclose(custom, want_custom, atol=1e-5, rtol=0)
    assert np.abs(custom - got).max() > 1e-3


def test_result_does_not_depend_on_the_batch(embedder: Qwen3Embedder, corpus: list[str]) -> None:
    rng = np.random.default_rng(0)
    others = [" ".join(rng.choice(corpus, size=int(rng.integers(1, 6)))) for _ in range(50)]
    target = corpus[4]
    alone = embedder.embed_documents([target])[0]
    mixed = embedder.embed_documents([*others[:20], target, *others[20:]])[20]
    np.testing.assert_allclose(alone, mixed, atol=1e-5, rtol=0)


def test_small_token_budget_gives_same_result(test_models: ModelPaths, corpus: list[str]) -> None:
    big = Qwen3Embedder(test_models.embedding, backend=CPU)
    small = Qwen3Embedder(
        test_models.embedding, backend=TransformersOptions(device="cpu", max_batch_tokens=40)
    )
    assert small.max_batch_tokens == 40
    np.testing.assert_allclose(
        big.embed_documents(corpus), small.embed_documents(corpus), atol=1e-5, rtol=0
    )


def test_left_padded_seed_batch_agrees(
    embedder: Qwen3Embedder, reference: ReferenceEmbedder, corpus: list[str]
) -> None:
    """The seed embeds a left-padded batch at once; the engine's right-padded, sorted batches
    agree with it."""
    batch = reference.tokenizer(corpus, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = reference.model(**batch).last_hidden_state[:, -1]
    want = torch.nn.functional.normalize(hidden, p=2, dim=1).numpy()
    np.testing.assert_allclose(embedder.embed_documents(corpus), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dims", [1, 16, 63, 64])
def test_matryoshka_dimensions(
    test_models: ModelPaths, reference: ReferenceEmbedder, corpus: list[str], dims: int
) -> None:
    emb = Qwen3Embedder(test_models.embedding, backend=CPU, dimensions=dims)
    got = emb.embed_documents(corpus[:5])
    assert got.shape == (5, dims) and emb.dimension == dims
    want = np.stack([reference.embed(t, dim=dims).numpy() for t in corpus[:5]])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_long_text_is_truncated_keeping_endoftext(
    test_models: ModelPaths,
    reference: ReferenceEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emb = Qwen3Embedder(test_models.embedding, backend=CPU, max_length=32)
    texts = ["gravity " * 500, "short text", "北京" * 400]
    with caplog.at_level(logging.WARNING, logger="qwen3_core"):
        got = emb.embed_documents(texts)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3" in warnings[0].getMessage()
    want = np.stack([reference.embed(t, max_length=32).numpy() for t in texts])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    ids = emb.tokenize_documents(texts)
    assert [len(i) for i in ids] == [32, 3, 32] and all(i[-1] == 151643 for i in ids)


def test_matches_sentence_transformers(
    embedder: Qwen3Embedder, test_models: ModelPaths, corpus: list[str]
) -> None:
    """sentence-transformers with last-token pooling is the field's reference implementation."""
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(test_models.embedding), max_seq_length=8192)
    pooling = models.Pooling(embedder.dimension, pooling_mode="lasttoken")
    st_model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    want = st_model.encode(corpus, batch_size=4, convert_to_numpy=True)
    np.testing.assert_allclose(embedder.embed_documents(corpus), want, atol=1e-5, rtol=0)


def test_empty_list_gives_empty_array(embedder: Qwen3Embedder) -> None:
    assert embedder.embed_documents([]).shape == (0, 64)
    assert embedder.embed_queries(()).shape == (0, 64)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.embed_documents("abc"), "texts must be a list of str, got a bare str"),
        (lambda e: e.embed_documents(["ok", None]), r"texts\[1\] must be a str, got NoneType"),
        (lambda e: e.embed_documents([b"bytes"]), r"texts\[0\] must be a str, got bytes"),
        (lambda e: e.embed_documents([["nested"]]), r"texts\[0\] must be a str, got list"),
        (lambda e: e.embed_documents(42), "texts must be a list of str, got int"),
        (lambda e: e.embed_queries(["q", 3]), r"queries\[1\] must be a str, got int"),
        (lambda e: e.embed_queries(["q"], instruction=5), "instruction must be a str"),
    ],
)
def test_bad_input_is_a_clear_type_error(embedder: Qwen3Embedder, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=message):
        call(embedder)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dimensions": 0}, "dimensions must be >= 1, got 0"),
        ({"dimensions": 65}, "dimensions must be between 1 and 64"),
        ({"max_length": 1}, "max_length must be >= 2"),
        ({"max_length": 10**6}, "exceeds the model's 32768 positions"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    test_models: ModelPaths, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Qwen3Embedder(test_models.embedding, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"dtype": "int8"}, "unknown dtype"), ({"device": "tpu"}, "unknown device")],
)
def test_bad_backend_option_is_a_clear_error(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformersOptions(**settings)  # type: ignore[arg-type]


def test_same_model_is_loaded_once(test_models: ModelPaths, embedder: Qwen3Embedder) -> None:
    again = Qwen3Embedder(str(test_models.embedding), backend=CPU, dimensions=8)
    assert again.loaded_model is embedder.loaded_model
