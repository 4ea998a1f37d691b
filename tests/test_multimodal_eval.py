"""``qwen3-rag eval`` on a corpus whose records name image files (a ViDoRe-style set in BEIR
layout), with the Qwen3-VL engines, on a tiny generated dataset and the tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_core import (
    Qwen3Embedder,
    Qwen3Reranker,
    Qwen3VLEmbedder,
    Qwen3VLReranker,
    TransformersOptions,
)
from qwen3_core.cli.main import main
from qwen3_core.errors import DatasetError
from qwen3_core.evaluation import evaluate, load_beir
from qwen3_core.evaluation.metrics import score_rankings
from qwen3_core.testing import ModelPaths, VLModelPaths, build_vl_test_models

QWEN3_RAG = Path(sys.executable).with_name("qwen3-rag")
CPU = TransformersOptions(device="cpu")


@pytest.fixture(scope="module")
def vl_models() -> VLModelPaths:
    return build_vl_test_models()


@pytest.fixture(scope="module")
def vl_embedder(vl_models: VLModelPaths) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder(vl_models.embedding, backend=CPU)


@pytest.fixture(scope="module")
def vl_reranker(vl_models: VLModelPaths) -> Qwen3VLReranker:
    return Qwen3VLReranker(vl_models.reranker, backend=CPU)


@pytest.fixture(autouse=True)
def tiny_models_here(test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN3_RAG_TEST_MODELS", str(test_models.embedding.parents[1]))


def _page(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write(folder: Path, corpus: list[dict[str, Any]], qrels: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(map(json.dumps, corpus)) + "\n")
    queries = [
        {"_id": "q-revenue", "text": "revenue chart for 2024"},
        {"_id": "q-logo", "text": "the company logo"},
        {"_id": "q-costs", "text": "slide about costs"},
    ]
    (folder / "queries.jsonl").write_text("\n".join(map(json.dumps, queries)) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(
        qrels
        or "query-id\tcorpus-id\tscore\nq-revenue\tpage-1\t1\nq-logo\tpage-2\t1\n"
        "q-costs\tpage-5\t2\nq-costs\ttext-1\t1\n"
    )
    return folder


@pytest.fixture
def vidore(tmp_path: Path) -> Path:
    """Six page images (three with a caption and a title, three alone, one of them named
    twice), and one text record."""
    folder = tmp_path / "tiny-vidore"
    corpus: list[dict[str, Any]] = []
    for i in range(6):
        _page(folder / "pages" / f"{i}.png", i, (160, 100 + 10 * i))
        record: dict[str, Any] = {"_id": f"page-{i}", "image": f"pages/{i}.png"}
        if i % 2 == 0:
            record.update(text=f"page {i} of the deck", title="Results")
        corpus.append(record)
    corpus.append({"_id": "page-3-again", "image": "pages/3.png"})
    corpus.append({"_id": "text-1", "text": "Costs fell by 3% in the second quarter."})
    return _write(folder, corpus)


def test_image_records_are_read_relative_to_the_folder(vidore: Path) -> None:
    dataset = load_beir(vidore)
    assert dataset.images == 7
    pages = vidore / "pages"
    assert dataset.document_images[:2] == (pages / "0.png", pages / "1.png")
    assert dataset.document_images[-1] is None
    inputs = dataset.document_inputs()
    # Caption and title together, the image read first by the engines; an image alone.
    assert inputs[0] == {"image": pages / "0.png", "text": "Results page 0 of the deck"}
    assert inputs[1] == pages / "1.png"
    assert inputs[-1] == "Costs fell by 3% in the second quarter."
    keys = dataset.document_keys()
    assert keys[3] == keys[6] and keys[1] != keys[3]


def test_a_changed_image_changes_the_corpus_hash(vidore: Path) -> None:
    before = load_beir(vidore).corpus_sha256
    assert load_beir(vidore).corpus_sha256 == before
    _page(vidore / "pages" / "4.png", 99, (160, 140))
    assert load_beir(vidore).corpus_sha256 != before


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"_id": "x", "image": "pages/missing.png"}, "missing.png' does not exist"),
        ({"_id": "x", "image": "pages"}, "pages' is not a file"),
        ({"_id": "x", "image": 3}, '"image" must be the path of an image file'),
        ({"_id": "x", "image": " "}, '"image" must be the path of an image file'),
        ({"_id": "x"}, 'expected a "text" string'),
    ],
)
def test_bad_image_records_name_their_line(
    vidore: Path, record: dict[str, Any], message: str
) -> None:
    corpus = vidore / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps(record) + "\n")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:9: ") as caught:
        load_beir(vidore)
    assert message in str(caught.value)


def test_evaluate_matches_the_vl_engines(
    vidore: Path, vl_embedder: Qwen3VLEmbedder, vl_reranker: Qwen3VLReranker, tmp_path: Path
) -> None:
    dataset = load_beir(vidore)
    result = evaluate(dataset, vl_embedder, vl_reranker, candidates=[3, 8], cache=False)
    documents = dataset.document_inputs()
    # Stage 1 by hand: each document embedded on its own, cosine similarity, best first.
    vectors = np.stack([vl_embedder.embed_documents([d])[0] for d in documents])
    rows = {doc_id: row for row, doc_id in enumerate(dataset.document_ids)}
    for q, query_id in enumerate(dataset.query_ids):
        similarity = vectors @ vl_embedder.embed_queries([dataset.queries[q]])[0]
        ours = [rows[doc_id] for doc_id in result.stage1.rankings[query_id]]
        assert sorted(ours) == list(range(len(documents)))
        np.testing.assert_allclose(similarity[ours], np.sort(similarity)[::-1], atol=1e-5)
        # Each count: what the reranker gives stage 1's top k, scored one pair at a time.
        for row in result.reranking:
            top = ours[: row.reranked]
            logits = np.array(
                [vl_reranker.logits(dataset.queries[q], [documents[i]])[0] for i in top]
            )
            got = [rows[doc_id] for doc_id in row.rankings[query_id]]
            np.testing.assert_allclose(
                logits[[top.index(i) for i in got]], np.sort(logits)[::-1], atol=1e-4
            )
    for row in [result.stage1, *result.reranking]:
        assert row.metrics == score_rankings(dataset.qrels, row.rankings)


def test_the_cache_keeps_image_corpora_and_sees_a_changed_image(
    vidore: Path, vl_embedder: Qwen3VLEmbedder, vl_reranker: Qwen3VLReranker, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = evaluate(
        load_beir(vidore), vl_embedder, vl_reranker, candidates=[2], cache_folder=cache
    )
    again = evaluate(
        load_beir(vidore), vl_embedder, vl_reranker, candidates=[2], cache_folder=cache
    )
    assert first.documents_embedded == 8 and again.corpus_from_cache
    assert again.stage1.rankings == first.stage1.rankings
    _page(vidore / "pages" / "2.png", 42)
    changed = evaluate(
        load_beir(vidore), vl_embedder, vl_reranker, candidates=[2], cache_folder=cache
    )
    assert changed.documents_embedded == 8


def test_text_engines_are_refused_on_images(
    vidore: Path, embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    with pytest.raises(ValueError, match=r"7 document.* with an image: Qwen3Embedder reads text"):
        evaluate(load_beir(vidore), embedder, reranker, candidates=[2], cache=False)


def test_console_script_runs_an_image_corpus(vidore: Path, vl_models: VLModelPaths) -> None:
    run = subprocess.run(
        [str(QWEN3_RAG), "eval", str(vidore), "--tiny", "--candidates", "3", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no warning, no progress bar
    out = run.stdout
    assert "Dataset tiny-vidore: 8 documents (7 with an image), 3 queries judged" in out
    assert "tiny RANDOM offline Qwen3-VL models" in out
    assert "stage 1: embedding search" in out and "+ reranking top 3" in out


def test_vl_models_are_recognised_by_their_config(
    tmp_path: Path,
    vl_models: VLModelPaths,
    test_models: ModelPaths,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A text corpus with Qwen3-VL models named: the Qwen3-VL engines run it."""
    folder = _write(
        tmp_path / "texts",
        [{"_id": f"page-{i}", "text": f"page {i}"} for i in range(6)]
        + [{"_id": "text-1", "text": "costs"}],
    )
    models = ["--embedding-model", str(vl_models.embedding)]
    models += ["--reranker-model", str(vl_models.reranker)]
    assert main(["eval", str(folder), *models, "--candidates", "2", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert f"Loading the embedding model {vl_models.embedding} ..." in out
    assert "+ reranking top 2" in out
    # One model of each family: refused, naming both.
    mixed = ["--embedding-model", str(vl_models.embedding)]
    mixed += ["--reranker-model", str(test_models.reranker)]
    assert main(["eval", str(folder), *mixed, "--candidates", "2", "--no-cache"]) == 2
    assert "must both be Qwen3-VL models or both text Qwen3 models" in _error(capsys)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_text_models_on_images_are_one_line(
    vidore: Path,
    test_models: ModelPaths,
    vl_models: VLModelPaths,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = ["--embedding-model", str(test_models.embedding)]
    text += ["--reranker-model", str(test_models.reranker)]
    assert main(["eval", str(vidore), *text, "--no-cache"]) == 2
    err = _error(capsys)
    assert "the corpus has 7 document(s) with an image" in err
    assert f"--embedding-model '{test_models.embedding}' cannot read" in err
    mixed = ["--embedding-model", str(vl_models.embedding)]
    mixed += ["--reranker-model", str(test_models.reranker)]
    assert main(["eval", str(vidore), *mixed, "--no-cache"]) == 2
    assert f"--reranker-model '{test_models.reranker}' cannot read" in _error(capsys)
    assert main(["eval", str(vidore), "--tiny", "--backend", "openvino", "--no-cache"]) == 2
    assert "Qwen3-VL models run on --backend transformers" in _error(capsys)
