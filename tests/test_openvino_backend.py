"""backend="openvino": qwen3-rag's decoder converted to OpenVINO and run by its CPU plugin.
Every checkpoint variant scores the official formula (1e-4 in float32, as every backend); the
conversion is kept on disk and reused; bad settings and uncovered checkpoints are refused by
name."""

from __future__ import annotations

import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.backends.openvino import MODEL_FILE
from qwen3_core.backends.options import OpenVINOOptions
from qwen3_core.testing import RERANKER_VARIANTS, ModelPaths, VariantPaths
from qwen3_core.variants import ModelKindError
from tests.options import CPU
from tests.reference import ReferenceEmbedder, ReferenceReranker, ReferenceSeqClsReranker

pytest.importorskip("openvino")

QUERY = "What is the capital of China?"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def options(cache: Path) -> OpenVINOOptions:
    return OpenVINOOptions(cache_folder=cache)


def _converted(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if (p / MODEL_FILE).is_file())


@pytest.mark.parametrize("name", RERANKER_VARIANTS)
def test_reranker_variant_scores_the_official_formula(
    name: str, test_variants: VariantPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    folder = test_variants.rerankers[name]
    engine = Qwen3Reranker(folder, backend=options)
    assert engine.backend == "openvino" and engine.options == options
    # Documents of many lengths: they run in right-padded batches, the reference one by one.
    got = engine.score(QUERY, corpus)
    seq_cls = name.startswith("seq-cls")
    reference = ReferenceSeqClsReranker(folder) if seq_cls else ReferenceReranker(folder)
    want = np.array([reference.score(QUERY, d) for d in corpus])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert got.max() - got.min() > 0.05


@pytest.mark.parametrize("name", ["flat", "causal-lm", "sentence-transformers"])
def test_embedding_variant_embeds_the_official_formula(
    name: str, test_variants: VariantPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    folder = test_variants.embeddings[name]
    engine = Qwen3Embedder(folder, backend=options)
    reference = ReferenceEmbedder(folder)
    want = torch.stack([reference.embed(d) for d in corpus]).numpy()
    np.testing.assert_allclose(engine.embed_documents(corpus), want, atol=1e-4, rtol=0)
    # Queries with the checkpoint's own query prompt, as the default backend embeds them.
    queries = ["capital of China", "rivers"]
    np.testing.assert_allclose(
        engine.embed_queries(queries),
        Qwen3Embedder(folder, backend=CPU).embed_queries(queries),
        atol=1e-4,
        rtol=0,
    )


def test_agrees_with_the_transformers_backend(
    test_models: ModelPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    texts = [*corpus, "x", "a longer text " * 40]
    openvino = Qwen3Embedder(test_models.embedding, backend=options)
    torch_cpu = Qwen3Embedder(test_models.embedding, backend=CPU)
    np.testing.assert_allclose(
        openvino.embed_documents(texts), torch_cpu.embed_documents(texts), atol=1e-4, rtol=0
    )
    ranked = Qwen3Reranker(test_models.reranker, backend=options).rerank(QUERY, corpus)
    want = Qwen3Reranker(test_models.reranker, backend=CPU).rerank(QUERY, corpus)
    assert [r.index for r in ranked] == [r.index for r in want]


def test_conversion_is_kept_and_reused(
    test_models: ModelPaths,
    tmp_path: Path,
    corpus: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(test_models.embedding, folder)
    cache = tmp_path / "cache"
    options = OpenVINOOptions(cache_folder=cache)
    first = Qwen3Embedder(folder, backend=options)
    want = first.embed_documents(corpus)
    assert capfd.readouterr() == ("", "")  # converting prints nothing
    (converted,) = _converted(cache)
    written = (converted / MODEL_FILE).stat().st_mtime_ns
    # Engines alive at once share the compiled model.
    assert Qwen3Embedder(folder, backend=options).loaded_model is first.loaded_model
    first.close()
    del first
    again = Qwen3Embedder(folder, backend=options)
    np.testing.assert_array_equal(again.embed_documents(corpus), want)
    assert _converted(cache) == [converted]
    assert (converted / MODEL_FILE).stat().st_mtime_ns == written
    # Changed weights are converted anew, never served from the old conversion.
    (folder / "model.safetensors").touch()
    Qwen3Embedder(folder, backend=options)
    assert len(_converted(cache)) == 2
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no half-written folder


def test_threads_loading_at_once_convert_once(test_models: ModelPaths, tmp_path: Path) -> None:
    options = OpenVINOOptions(cache_folder=tmp_path)
    with ThreadPoolExecutor(3) as pool:
        engines = list(
            pool.map(lambda _: Qwen3Reranker(test_models.reranker, backend=options), range(3))
        )
    assert len({id(e.loaded_model) for e in engines}) == 1
    assert len(_converted(tmp_path)) == 1


def test_threads_scoring_at_once_get_their_own_results(
    test_models: ModelPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    engine = Qwen3Reranker(test_models.reranker, backend=options)
    queries = [QUERY, "a query about rivers", "mountains", "x"] * 3
    alone = [engine.score(q, corpus) for q in queries]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: engine.score(q, corpus), queries))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"INFERENCE_PRECISION_HINT": "bf16"}, "config may not set 'INFERENCE_PRECISION_HINT'"),
        ({"CACHE_DIR": "/tmp/x"}, r"config may not set 'CACHE_DIR': use .*cache_folder"),
    ],
)
def test_config_may_not_change_precision_or_cache(config: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenVINOOptions(config=config)


def test_bad_settings_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="max_batch_tokens"):
        OpenVINOOptions(max_batch_tokens=0)
    with pytest.raises(TypeError, match="cache_folder must be a path"):
        OpenVINOOptions(cache_folder=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a dict"):
        OpenVINOOptions(config=["INFERENCE_NUM_THREADS"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="share_prefix"):
        OpenVINOOptions(share_prefix=True)  # type: ignore[call-arg]


def test_a_property_openvino_refuses_is_named(
    test_models: ModelPaths, options: OpenVINOOptions
) -> None:
    bad = OpenVINOOptions(cache_folder=options.cache_folder, config={"NO_SUCH_PROPERTY": 1})
    with pytest.raises(ValueError, match="OpenVINO could not compile the model with config="):
        Qwen3Embedder(test_models.embedding, backend=bad)


def test_a_checkpoint_the_decoder_does_not_cover_is_refused(
    test_models: ModelPaths, tmp_path: Path, options: OpenVINOOptions
) -> None:
    folder = tmp_path / "yarn"
    shutil.copytree(test_models.embedding, folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelKindError, match="backend='transformers'"):
        Qwen3Embedder(folder, backend=options)


def test_without_openvino_the_extra_is_named(
    test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'qwen3-rag\[openvino\]'"):
        Qwen3Embedder(test_models.embedding, backend="openvino")


def test_adapters_run_on_openvino(
    test_models: ModelPaths, options: OpenVINOOptions, corpus: list[str]
) -> None:
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from langchain_qwen3 import Qwen3Embeddings
    from llamaindex_qwen3 import Qwen3Rerank

    documents = [Document(page_content=t) for t in corpus]
    found = [
        InMemoryVectorStore.from_documents(
            documents, Qwen3Embeddings(model=str(test_models.embedding), backend=backend)
        ).similarity_search_with_score(QUERY, k=3)
        for backend in (options, CPU)
    ]
    assert [d.page_content for d, _ in found[0]] == [d.page_content for d, _ in found[1]]
    np.testing.assert_allclose([s for _, s in found[0]], [s for _, s in found[1]], atol=1e-4)
    rerank = Qwen3Rerank(model=str(test_models.reranker), backend=options, top_n=2)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in corpus]
    top = rerank.postprocess_nodes(nodes, QueryBundle(QUERY))
    want = Qwen3Reranker(test_models.reranker, backend=CPU).rerank(QUERY, corpus, top_n=2)
    assert [n.node.get_content() for n in top] == [corpus[r.index] for r in want]
    np.testing.assert_allclose([n.score for n in top], [r.score for r in want], atol=1e-4)


def test_demo_runs_on_openvino(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    from qwen3_core.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the default cache folder
    bars = hf_logging.is_progress_bar_enabled()
    try:
        assert main(["demo", "--tiny", "--backend", "openvino", "--query", "什么是重力？"]) == 0
    finally:  # the command turns transformers' bars off for its process; later tests need them
        if bars:
            hf_logging.enable_progress_bar()
    out, err = capfd.readouterr()
    assert "stage 2  reranking 8 candidates" in out and err == ""
    assert (tmp_path / "qwen3-rag" / "openvino").is_dir()


def test_corpus_job_workers_run_it_without_bars() -> None:
    from qwen3_core.batch.workers import engine_keywords

    assert engine_keywords({"backend": "openvino"})["backend"] == OpenVINOOptions(
        show_progress=False
    )
    given = OpenVINOOptions(show_progress=True, max_batch_tokens=64)
    assert engine_keywords({"backend": given})["backend"] == given
