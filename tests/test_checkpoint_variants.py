"""Every checkpoint variant users download scores exactly as the official formula, on every
local backend (one matrix: log-odds within 1e-4, P(yes) within 1e-5 in float32 on the
transformers backend, 1e-4 on OpenVINO): tied and untied causal-LM rerankers,
sequence-classification conversions with one and two labels, sentence-transformers layouts
(written by sentence-transformers itself as well as by the builder), sharded bfloat16 files,
and embedding models saved through the causal LM class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import (
    OpenVINOOptions,
    Qwen3Embedder,
    Qwen3Reranker,
    ServerOptions,
    TransformersOptions,
)
from qwen3_core.backend_options import BackendOptions
from qwen3_core.testing import EMBEDDING_VARIANTS, RERANKER_VARIANTS, ModelPaths, VariantPaths
from qwen3_core.testing.variants import FINE_TUNED_QUERY_PROMPT
from tests.options import CPU
from tests.reference import (
    ReferenceEmbedder,
    ReferenceReranker,
    ReferenceSeqClsReranker,
    official,
)

QUERY = "What is the capital of China?"


@pytest.fixture(scope="module")
def reference_scores(test_models: ModelPaths, corpus: list[str]) -> np.ndarray:
    """The official formula on the base causal-LM reranker, one prompt at a time."""
    reference = ReferenceReranker(test_models.reranker)
    return np.array([reference.score(QUERY, d) for d in corpus])


class Rerankers(dict[str, Qwen3Reranker]):
    """One engine per variant for the module: loading the tokenizer costs seconds."""

    def __init__(self, variants: VariantPaths) -> None:
        super().__init__()
        self.variants = variants

    def __missing__(self, name: str) -> Qwen3Reranker:
        engine = self[name] = Qwen3Reranker(self.variants.rerankers[name], backend=CPU)
        return engine


@pytest.fixture(scope="module")
def rerankers(test_variants: VariantPaths) -> Rerankers:
    return Rerankers(test_variants)


@pytest.fixture(scope="module")
def reference_embedder(test_models: ModelPaths) -> ReferenceEmbedder:
    return ReferenceEmbedder(test_models.embedding)


def _matrix(names: tuple[str, ...]) -> list[Any]:
    """Every variant on every local backend; the 36-layer variant's rows are ``slow`` (CI's
    slow job runs them)."""
    return [
        pytest.param(
            name,
            backend,
            id=f"{backend}-{name}",
            marks=[pytest.mark.slow] if name in SLOW_VARIANTS else [],
        )
        for backend in BACKENDS
        for name in names
    ]


BACKENDS = ("transformers", "openvino")
SLOW_VARIANTS = frozenset({"untied-36-layers"})


class OfficialScores(dict[str, tuple[np.ndarray, np.ndarray]]):
    """The official formula's (log-odds, P(yes)) of each variant, computed once for all its
    backends' rows."""

    def __init__(self, variants: VariantPaths, corpus: list[str]) -> None:
        super().__init__()
        self.variants, self.corpus = variants, corpus

    def __missing__(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        folder = self.variants.rerankers[name]
        seq_cls = name.startswith("seq-cls")
        reference = ReferenceSeqClsReranker(folder) if seq_cls else ReferenceReranker(folder)
        scores = self[name] = official(reference, QUERY, self.corpus)
        return scores


@pytest.fixture(scope="module")
def official_scores(test_variants: VariantPaths, corpus: list[str]) -> OfficialScores:
    return OfficialScores(test_variants, corpus)


@pytest.fixture(scope="module")
def openvino_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


def _options(backend: str, openvino_cache: Path) -> BackendOptions:
    if backend == "openvino":
        pytest.importorskip("openvino")
        return OpenVINOOptions(cache_folder=openvino_cache)
    return CPU


@pytest.mark.parametrize(("name", "backend"), _matrix(RERANKER_VARIANTS))
def test_reranker_variant_is_the_official_formula(
    name: str,
    backend: str,
    test_variants: VariantPaths,
    rerankers: Rerankers,
    official_scores: OfficialScores,
    openvino_cache: Path,
    corpus: list[str],
) -> None:
    """The log-odds within 1e-4 of the official formula on the folder as transformers itself
    loads it, P(yes) their sigmoid, pairs as documents; documents of many lengths, so the
    engine runs right-padded batches where the formula takes one prompt at a time."""
    folder = test_variants.rerankers[name]
    want_log_odds, want_p = official_scores[name]
    if backend == "transformers":
        engine = rerankers[name]
    else:
        engine = Qwen3Reranker(folder, backend=_options(backend, openvino_cache))
    assert engine.backend == backend
    got = engine.logits(QUERY, corpus)
    assert got.dtype == np.float32 and got.shape == (len(corpus),)
    np.testing.assert_allclose(got, want_log_odds, atol=1e-4, rtol=0)
    assert np.ptp(got) > 1.0  # the log-odds depend on the document
    p_tolerance = 1e-5 if backend == "transformers" else 1e-4
    np.testing.assert_allclose(engine.score(QUERY, corpus), want_p, atol=p_tolerance, rtol=0)
    pairs = [(QUERY, d) for d in corpus]
    np.testing.assert_allclose(engine.logits_pairs(pairs), got, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["seq-cls-1", "seq-cls-2", "sentence-transformers"])
def test_conversions_score_like_the_reranker_they_came_from(
    name: str, rerankers: Rerankers, corpus: list[str], reference_scores: np.ndarray
) -> None:
    got = rerankers[name].score(QUERY, corpus)
    np.testing.assert_allclose(got, reference_scores, atol=1e-5, rtol=0)


def test_sharded_bfloat16_loads_in_bfloat16_too(
    test_variants: VariantPaths, rerankers: Rerankers, corpus: list[str]
) -> None:
    folder = test_variants.rerankers["sharded-bf16"]
    full = rerankers["sharded-bf16"].score(QUERY, corpus)
    half = Qwen3Reranker(folder, backend=TransformersOptions(device="cpu", dtype="bfloat16"))
    assert half.dtype == torch.bfloat16
    np.testing.assert_allclose(half.score(QUERY, corpus), full, atol=5e-2)


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("causal-untied", "causal LM, own lm_head"),
        ("causal-tied", "causal LM, tied lm_head"),
        ("seq-cls-1", "sequence classification, 1 label"),
        ("seq-cls-2", "sequence classification, 2 labels"),
        ("sentence-transformers", "sentence-transformers cross-encoder over a causal LM"),
    ],
)
def test_variant_is_named_in_the_repr(name: str, description: str, rerankers: Rerankers) -> None:
    assert description in repr(rerankers[name])


def test_reranker_saved_by_sentence_transformers(
    test_models: ModelPaths, tmp_path: Path, corpus: list[str], reference_scores: np.ndarray
) -> None:
    """A folder written by sentence-transformers' own CrossEncoder.save_pretrained: its
    LogitScore module names the token ids, and those are the ones compared."""
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(test_models.reranker), device="cpu").save_pretrained(str(tmp_path / "ce"))
    assert (tmp_path / "ce" / "modules.json").is_file()
    engine = Qwen3Reranker(tmp_path / "ce", backend=CPU)
    assert "sentence-transformers" in engine.variant.description
    np.testing.assert_allclose(engine.score(QUERY, corpus), reference_scores, atol=1e-5)


def test_builder_layouts_load_in_sentence_transformers(test_variants: VariantPaths) -> None:
    """The builder's sentence-transformers folders are the real layout: sentence-transformers
    reads them back with the same modules and token ids."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    cross = CrossEncoder(str(test_variants.rerankers["sentence-transformers"]), device="cpu")
    score_module = cross[-1]
    tokenizer = cross.tokenizer
    assert score_module.true_token_id == tokenizer.convert_tokens_to_ids("yes")
    assert score_module.false_token_id == tokenizer.convert_tokens_to_ids("no")
    st = SentenceTransformer(str(test_variants.embeddings["sentence-transformers"]), device="cpu")
    assert st.prompts["query"] == FINE_TUNED_QUERY_PROMPT


@pytest.mark.parametrize(("name", "backend"), _matrix(EMBEDDING_VARIANTS))
def test_embedding_variant_is_the_official_formula(
    name: str,
    backend: str,
    test_variants: VariantPaths,
    reference_embedder: ReferenceEmbedder,
    openvino_cache: Path,
    corpus: list[str],
) -> None:
    engine = Qwen3Embedder(
        test_variants.embeddings[name], backend=_options(backend, openvino_cache)
    )
    want = torch.stack([reference_embedder.embed(d) for d in corpus]).numpy()
    tolerance = 1e-5 if backend == "transformers" else 1e-4
    np.testing.assert_allclose(engine.embed_documents(corpus), want, atol=tolerance, rtol=0)
    if backend == "transformers":
        # Only the base model is loaded: no lm_head memory is spent.
        names = [n for n, _ in engine.loaded_model.named_parameters()]
        assert not any("lm_head" in n for n in names)


def test_declared_query_prompt_is_the_default(
    test_variants: VariantPaths, reference_embedder: ReferenceEmbedder, queries: list[str]
) -> None:
    engine = Qwen3Embedder(test_variants.embeddings["sentence-transformers"], backend=CPU)
    assert engine.instruction == "Given a product question, retrieve matching listings"
    assert "from the checkpoint" in repr(engine)
    want = torch.stack([reference_embedder.embed(FINE_TUNED_QUERY_PROMPT + q) for q in queries])
    np.testing.assert_allclose(engine.embed_queries(queries), want.numpy(), atol=1e-5, rtol=0)
    # An explicit instruction still wins, at construction and per call.
    task = "Find the passage"
    explicit = Qwen3Embedder(
        test_variants.embeddings["sentence-transformers"], backend=CPU, instruction=task
    )
    assert "from the checkpoint" not in repr(explicit)
    mine = torch.stack([reference_embedder.query(q, instruction=task) for q in queries]).numpy()
    np.testing.assert_allclose(explicit.embed_queries(queries), mine, atol=1e-5, rtol=0)
    np.testing.assert_allclose(engine.embed_queries(queries, task), mine, atol=1e-5, rtol=0)


def test_embedder_saved_by_sentence_transformers_matches_its_encode(
    test_models: ModelPaths, tmp_path: Path, queries: list[str], corpus: list[str]
) -> None:
    """sentence-transformers itself as the reference: a Transformer + last-token Pooling +
    Normalize model with a query prompt, saved and encoded by sentence-transformers."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    transformer = Transformer(str(test_models.embedding))
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    prompt = "Instruct: Find the listing for a product question\nQuery:"
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts={"query": prompt, "document": ""},
        device="cpu",
    )
    model.save(str(tmp_path / "st"))
    engine = Qwen3Embedder(tmp_path / "st", backend=CPU)
    assert engine.query_prompt == prompt
    for text in queries[:3]:  # one at a time: no padding in the reference
        want = model.encode([text], prompt_name="query", convert_to_numpy=True)
        np.testing.assert_allclose(engine.embed_queries([text]), want, atol=1e-5, rtol=0)
    want = model.encode(corpus[:1], convert_to_numpy=True)
    np.testing.assert_allclose(engine.embed_documents(corpus[:1]), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("shape", "hidden"), [("4b", 2560), ("8b", 4096)])
def test_matryoshka_range_of_the_larger_models(
    shape: str, hidden: int, test_models: ModelPaths, tmp_path: Path
) -> None:
    """The 4B and 8B embedding configs (as a server client reads them, without weights):
    ``dimensions`` ranges up to their hidden size."""
    import json
    import shutil
    from dataclasses import asdict

    from qwen3_core.testing import SHAPES

    folder = tmp_path / shape
    shutil.copytree(test_models.embedding, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config.update(asdict(SHAPES[shape]))
    config["layer_types"] = ["full_attention"] * SHAPES[shape].num_hidden_layers
    (folder / "config.json").write_text(json.dumps(config))
    server = ServerOptions(base_url="http://127.0.0.1:9")
    full = Qwen3Embedder(folder, backend=server)
    assert full.dimension == hidden
    assert Qwen3Embedder(folder, dimensions=32, backend=server).dimension == 32
    with pytest.raises(ValueError, match=f"dimensions.*{hidden}"):
        Qwen3Embedder(folder, dimensions=hidden + 1, backend=server)


def test_adapters_use_the_declared_query_prompt(
    test_variants: VariantPaths, reference_embedder: ReferenceEmbedder
) -> None:
    from langchain_qwen3 import Qwen3Embeddings
    from llamaindex_qwen3 import Qwen3Embedding

    folder = test_variants.embeddings["sentence-transformers"]
    want = reference_embedder.embed(FINE_TUNED_QUERY_PROMPT + "red running shoes").numpy()
    langchain = Qwen3Embeddings(model=str(folder), backend=CPU)
    np.testing.assert_allclose(langchain.embed_query("red running shoes"), want, atol=1e-5)
    llamaindex = Qwen3Embedding(model=str(folder), backend=CPU)
    np.testing.assert_allclose(llamaindex.get_query_embedding("red running shoes"), want, atol=1e-5)


def test_loading_prints_nothing(
    test_variants: VariantPaths, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """No "Loading weights" bar and no load report (the causal-LM-saved embedder's lm_head is
    an unexpected tensor to transformers): the engine checks the report itself."""
    import shutil

    folder = tmp_path / "fresh"  # a folder of its own: a real load, not the shared copy
    shutil.copytree(test_variants.embeddings["causal-lm"], folder)
    capfd.readouterr()
    Qwen3Embedder(folder, backend=CPU).embed_documents(["x"])
    out, err = capfd.readouterr()
    assert "Loading weights" not in err + out and "LOAD REPORT" not in err + out
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # restored for the user's own loads


def test_declared_document_prompt_is_applied(
    test_variants: VariantPaths,
    reference_embedder: ReferenceEmbedder,
    corpus: list[str],
    tmp_path: Path,
) -> None:
    """A fine-tuned model that declares a document prompt gets it before every document, as
    sentence-transformers' ``encode(prompt_name="document")`` does."""
    import json
    import shutil

    folder = tmp_path / "st"
    shutil.copytree(test_variants.embeddings["sentence-transformers"], folder)
    config_path = folder / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text())
    config["prompts"]["document"] = "passage: "
    config_path.write_text(json.dumps(config))
    engine = Qwen3Embedder(folder, backend=CPU)
    assert "document_prompt='passage: '" in repr(engine)
    want = torch.stack([reference_embedder.embed("passage: " + d) for d in corpus[:4]]).numpy()
    np.testing.assert_allclose(engine.embed_documents(corpus[:4]), want, atol=1e-5, rtol=0)
