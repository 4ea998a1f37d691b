"""``qwen3-rag eval`` and ``qwen3_core.evaluation``: metrics against values worked out by hand,
the two-stage run on the tiny models against the engines called directly, the corpus-vector
cache, the real command end to end, and bad files as one line with exit status 2."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.cli.main import main
from qwen3_core.evaluation import (
    METRICS,
    BeirDataset,
    DatasetError,
    VectorCache,
    evaluate,
    load_beir,
    plot_results,
    score_rankings,
    top_documents,
)
from qwen3_core.testing import ModelPaths
from tests.options import CPU

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TOPICS = {
    "capital": [
        "Beijing is the capital of China and its political centre.",
        "Paris is the capital of France, on the river Seine.",
        "Canberra was chosen as the capital of Australia in 1908.",
    ],
    "gravity": [
        "Gravity pulls objects with mass towards each other.",
        "Newton's law of universal gravitation relates force, mass and distance.",
        "On Earth's surface gravity accelerates falling objects at about 9.8 m/s².",
    ],
    "python": [
        "Python is a programming language with a clear, readable syntax.",
        "pip installs Python packages from the Python Package Index.",
        "A Python virtual environment keeps a project's packages apart.",
    ],
    "tea": [
        "Green tea is made from leaves that are not oxidised.",
        "Black tea is fully oxidised before it is dried.",
        "Oolong tea is partly oxidised, between green and black tea.",
    ],
}
QUERIES = {
    "q-capital": "What is the capital of a country?",
    "q-gravity": "Why do things fall to the ground?",
    "q-python": "How do I install a Python library?",
    "q-tea": "How is tea processed?",
    "q-dev-only": "A query judged only in the dev split",
}


def write_dataset(folder: Path, *, duplicate: bool = True) -> Path:
    """A BEIR-format dataset: 4 topics of 3 documents, 12 fillers (and, with ``duplicate``, a
    second copy of one document under another id, whose scores tie with the first)."""
    (folder / "qrels").mkdir(parents=True)
    corpus = []
    qrels = ["query-id\tcorpus-id\tscore"]
    for topic, texts in TOPICS.items():
        for number, text in enumerate(texts):
            doc_id = f"{topic}-{number}"
            corpus.append({"_id": doc_id, "title": topic.title(), "text": text})
            qrels.append(f"q-{topic}\t{doc_id}\t{2 if number == 0 else 1}")
    for number in range(12):
        corpus.append({"_id": number, "text": f"Filler document number {number}."})
    if duplicate:
        corpus.append({"_id": "tea-0-copy", "title": "Tea", "text": TOPICS["tea"][0]})
    qrels.append("q-tea\t3\t0")  # judged, and not relevant
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    queries = [{"_id": query_id, "text": text} for query_id, text in QUERIES.items()]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq-dev-only\t1\t1\n")
    return folder


@pytest.fixture()
def dataset_folder(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny-beir")


@pytest.fixture(autouse=True)
def tiny_models_here(test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN3_RAG_TEST_MODELS", str(test_models.embedding.parents[1]))


# Metrics against values worked out by hand.


def _dcg(gains: list[int]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, 1))


def test_metrics_match_hand_computed_values() -> None:
    fillers = [f"f{i}" for i in range(20)]
    qrels = {
        # Graded: d1 very relevant, d2 and d4 relevant, d3 judged not relevant.
        "q1": {"d1": 2, "d2": 1, "d3": 0, "d4": 1},
        "q2": {"d6": 1},
        "q3": {"d7": 1},
    }
    rankings = {
        # d3 (grade 0) first, d1 second, d2 fourth; d4 at rank 12, past the cut at 10.
        "q1": ["d3", "d1", "f0", "d2", *fillers[1:8], "d4"],
        # The one relevant document at rank 11.
        "q2": [*fillers[:10], "d6"],
        "q3": ["d7", *fillers[:3]],
    }
    ndcg_q1 = (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3) + 1 / math.log2(4))
    assert ndcg_q1 == pytest.approx(_dcg([0, 2, 0, 1]) / _dcg([2, 1, 1]))
    expected = {
        "nDCG@10": (ndcg_q1 + 0.0 + 1.0) / 3,
        "Recall@10": (2 / 3 + 0.0 + 1.0) / 3,
        "Recall@100": (1.0 + 1.0 + 1.0) / 3,
        "MRR@10": (1 / 2 + 0.0 + 1.0) / 3,
    }
    got = score_rankings(qrels, rankings)
    assert list(got) == list(METRICS)
    for name in METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_metrics_use_the_order_given_not_the_libraries_tie_breaking() -> None:
    """trec_eval breaks equal scores by document id; a ranking is passed in its own order."""
    qrels = {"q": {"a": 1}}
    assert score_rankings(qrels, {"q": ["a", "z"]})["MRR@10"] == 1.0
    assert score_rankings(qrels, {"q": ["z", "a"]})["MRR@10"] == 0.5


def test_metrics_refuse_incomplete_rankings() -> None:
    with pytest.raises(ValueError, match="judged but has no ranking"):
        score_rankings({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": ["a"]})
    with pytest.raises(ValueError, match="repeats a document"):
        score_rankings({"q1": {"a": 1}}, {"q1": ["a", "b", "a"]})


def test_grades_at_or_below_zero_count_as_not_relevant() -> None:
    """trec_eval's rule; its C code reads a negative grade as "unjudged" and crashed on a
    query judged only below zero (q2)."""
    rankings = {"q1": ["b", "a", "c"], "q2": ["c", "a"]}
    by_hand = {  # q1: its one relevant document second; q2: none relevant
        "nDCG@10": (1 / math.log2(3) + 0.0) / 2,
        "Recall@10": (1.0 + 0.0) / 2,
        "Recall@100": (1.0 + 0.0) / 2,
        "MRR@10": (1 / 2 + 0.0) / 2,
    }
    for low in (-2, -1, 0, -1000):
        got = score_rankings({"q1": {"a": 1, "b": low}, "q2": {"c": low}}, rankings)
        assert got == pytest.approx(by_hand, abs=1e-12), low


def test_metrics_refuse_grades_out_of_range() -> None:
    for grade in (1001, -1001, 4294967294, 2**31, 2**63 - 1, 10**23):
        with pytest.raises(ValueError, match=r"query 'q' and document 'a': the grade .* range"):
            score_rankings({"q": {"a": grade}}, {"q": ["a"]})
    for grade in (1.0, True, "1"):
        with pytest.raises(ValueError, match="is not an integer"):
            score_rankings({"q": {"a": grade}}, {"q": ["a"]})  # type: ignore[dict-item]
    assert score_rankings({"q": {"a": np.int64(1000)}}, {"q": ["a"]})["nDCG@10"] == 1.0


# Reading datasets.


def test_load_beir_reads_the_split(dataset_folder: Path) -> None:
    dataset = load_beir(dataset_folder)
    assert dataset.name == "tiny-beir" and dataset.split == "test"
    assert len(dataset.documents) == 4 * 3 + 12 + 1
    assert dataset.documents[0] == "Capital " + TOPICS["capital"][0]  # title, space, text
    assert dataset.document_ids[12] == "0"  # an integer id, read as its text
    assert dataset.query_ids == ["q-capital", "q-gravity", "q-python", "q-tea"]
    assert dataset.unjudged_queries == 1
    assert dataset.qrels["q-tea"] == {"tea-0": 2, "tea-1": 1, "tea-2": 1, "3": 0}
    dev = load_beir(dataset_folder, "dev")
    assert dev.query_ids == ["q-dev-only"] and dev.corpus_sha256 == dataset.corpus_sha256
    same = load_beir(
        corpus_file=dataset_folder / "corpus.jsonl",
        queries_file=dataset_folder / "queries.jsonl",
        qrels_file=dataset_folder / "qrels" / "test.tsv",
    )
    assert same.qrels == dataset.qrels and same.documents == dataset.documents


def test_qrels_header_is_recognised_by_its_content(dataset_folder: Path) -> None:
    qrels = dataset_folder / "qrels" / "test.tsv"
    for header in ("query-id\tcorpus-id\tscore", "qid\tdocid\trelevance", "a b grade"):
        qrels.write_text(f"{header}\nq-tea\ttea-0\t2\nq-tea\t3\t-2\n")
        assert load_beir(dataset_folder).qrels == {"q-tea": {"tea-0": 2, "3": -2}}, header
    # No header: the first line is a judgement like the others.
    qrels.write_text("q-tea\ttea-0\t1\nq-gravity\tgravity-1\t+3\n")
    assert load_beir(dataset_folder).qrels == {"q-tea": {"tea-0": 1}, "q-gravity": {"gravity-1": 3}}


# The two-stage run on the tiny models, against the engines called directly.


def _similarities(embedder: Qwen3Embedder, dataset: BeirDataset, query: int) -> np.ndarray:
    vectors = embedder.embed_documents(dataset.documents)
    return vectors @ embedder.embed_queries([dataset.queries[query]])[0]


def test_evaluate_matches_the_engines(
    dataset_folder: Path, embedder: Qwen3Embedder, reranker: Qwen3Reranker, tmp_path: Path
) -> None:
    dataset = load_beir(dataset_folder)
    result = evaluate(
        dataset, embedder, reranker, candidates=[10, 3, 40], cache_folder=tmp_path / "cache"
    )
    documents = len(dataset.documents)
    assert [row.candidates for row in result.reranking] == [10, 3, 40]
    assert [row.reranked for row in result.reranking] == [10, 3, documents]
    assert result.reranking[2].label == f"+ reranking top 40 (all {documents})"
    assert result.search == "numpy" and result.queries == 4

    # Stage 1 alone: the whole corpus (fewer than 100 documents) by cosine similarity, best
    # first. (The two copies of tea-0 tie: either may come first.)
    rows = {doc_id: row for row, doc_id in enumerate(dataset.document_ids)}
    stage1 = {}
    for q, query_id in enumerate(dataset.query_ids):
        similarity = _similarities(embedder, dataset, q)
        ours = [rows[doc_id] for doc_id in result.stage1.rankings[query_id]]
        assert sorted(ours) == list(range(documents))
        by_hand = np.sort(similarity)[::-1]
        np.testing.assert_allclose(similarity[ours], by_hand, atol=1e-6)
        stage1[query_id] = ours
    assert result.stage1.metrics == score_rankings(dataset.qrels, result.stage1.rankings)

    # Each count: what reranker.rerank gives stage 1's top k alone.
    for row in result.reranking:
        for q, query_id in enumerate(dataset.query_ids):
            top = stage1[query_id][: row.reranked]
            ranked = reranker.rerank(dataset.queries[q], [dataset.documents[i] for i in top])
            expected_ids = [dataset.document_ids[top[r.index]] for r in ranked]
            assert row.rankings[query_id] == expected_ids, (row.candidates, query_id)
        assert row.metrics == score_rankings(dataset.qrels, row.rankings)
        assert row.seconds > 0
    # A deeper count's time includes the shallower ones' (the candidates are scored once).
    times = {row.reranked: row.seconds for row in result.reranking}
    assert times[3] <= times[10] <= times[documents]

    # The copy of tea-0 ties with it in reranking: the two stay in stage 1's order.
    first = [i for i in stage1["q-tea"] if dataset.document_ids[i].startswith("tea-0")]
    tea = result.reranking[2].rankings["q-tea"]
    position = tea.index(dataset.document_ids[first[0]])
    assert tea[position + 1] == dataset.document_ids[first[1]]


def test_second_run_reads_the_cached_corpus_vectors(
    dataset_folder: Path,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    test_models: ModelPaths,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    dataset = load_beir(dataset_folder)
    first = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=cache)
    assert first.documents_embedded == len(dataset.documents) and not first.corpus_from_cache
    assert first.cache_file is not None and first.cache_file.parent == cache
    written = first.cache_file.stat().st_mtime_ns

    again = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=cache)
    assert again.documents_embedded == 0 and again.corpus_from_cache
    assert again.cache_file == first.cache_file
    assert first.cache_file.stat().st_mtime_ns == written  # read, not written again
    assert again.stage1.rankings == first.stage1.rankings
    assert again.reranking[0].metrics == first.reranking[0].metrics

    # The query instruction does not touch the document vectors: they are reused.
    other_task = evaluate(
        dataset, embedder, reranker, candidates=[5], cache_folder=cache, instruction="Find tea"
    )
    assert other_task.documents_embedded == 0

    # Other dimensions, another corpus, or no cache: embedded again.
    with Qwen3Embedder(test_models.embedding, backend=CPU, dimensions=32) as shorter:
        cut = evaluate(dataset, shorter, reranker, candidates=[5], cache_folder=cache)
    assert cut.documents_embedded == len(dataset.documents) and cut.cache_file != first.cache_file
    with (dataset_folder / "corpus.jsonl").open("a") as corpus:
        corpus.write(json.dumps({"_id": "new", "text": "One more document."}) + "\n")
    grown = evaluate(
        load_beir(dataset_folder), embedder, reranker, candidates=[5], cache_folder=cache
    )
    assert grown.documents_embedded == len(dataset.documents) + 1
    assert grown.cache_file not in (first.cache_file, cut.cache_file)
    uncached = evaluate(dataset, embedder, reranker, candidates=[5], cache=False)
    assert uncached.documents_embedded == len(dataset.documents) and uncached.cache_file is None
    assert len(list(cache.glob("*.npz"))) == 3


def test_a_damaged_cache_file_is_embedded_again(
    dataset_folder: Path, embedder: Qwen3Embedder, reranker: Qwen3Reranker, tmp_path: Path
) -> None:
    dataset = load_beir(dataset_folder)
    first = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
    assert first.cache_file is not None
    first.cache_file.write_bytes(first.cache_file.read_bytes()[:100])
    again = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
    assert again.documents_embedded == len(dataset.documents)
    assert again.stage1.rankings == first.stage1.rankings


def _rewrite_cache_file(path: Path, change: dict[str, np.ndarray]) -> None:
    """The cache file with some members replaced and the others kept as they were (a valid
    zip: only the content is wrong)."""
    with np.load(path, allow_pickle=False) as stored:
        members = {name: stored[name] for name in stored.files}
    with path.open("wb") as file:
        np.savez(file, **{**members, **change})


def _damage_cases(vectors: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    swapped = vectors.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    return {
        # Finite, the right shape and key: only what was written tells them apart.
        "rows-swapped": {"vectors": swapped},
        "float64": {"vectors": vectors.astype(np.float64)},
        "one-row-short": {"vectors": vectors[:-1]},
    }


def test_cached_vectors_that_differ_from_what_was_written_are_embedded_again(
    dataset_folder: Path,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dataset = load_beir(dataset_folder)
    first = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
    assert first.cache_file is not None
    with np.load(first.cache_file, allow_pickle=False) as stored:
        vectors = stored["vectors"]
    for name, change in _damage_cases(vectors).items():
        _rewrite_cache_file(first.cache_file, change)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
        assert again.documents_embedded == len(dataset.documents), name
        assert again.stage1.metrics == first.stage1.metrics, name
        assert again.cache_file == first.cache_file, name  # written again, whole
        messages = [record.getMessage() for record in caplog.records]
        assert len(messages) == 1 and str(first.cache_file) in messages[0], (name, messages)
    reread = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
    assert reread.corpus_from_cache and reread.stage1.metrics == first.stage1.metrics


def test_cached_vectors_that_are_not_finite_are_embedded_again(
    dataset_folder: Path,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stored whole through the cache's own writer: only the values are wrong."""
    dataset = load_beir(dataset_folder)
    first = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
    store = VectorCache(tmp_path)
    key = store.key(embedder, dataset.corpus_sha256, len(dataset.documents))
    assert store.path(key) == first.cache_file
    rotten = np.full((len(dataset.documents), embedder.dimension), np.nan, dtype=np.float32)
    store.save(key, rotten)
    with caplog.at_level(logging.WARNING):
        again = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=tmp_path)
    assert again.documents_embedded == len(dataset.documents)
    assert again.stage1.metrics == first.stage1.metrics
    assert len(caplog.records) == 1 and "not finite" in caplog.records[0].getMessage()


def test_a_model_file_changed_in_place_changes_the_cache_key(
    test_models: ModelPaths, dataset_folder: Path, tmp_path: Path
) -> None:
    """Same size, same modification time, other bytes: the key follows the content."""
    model = shutil.copytree(test_models.embedding, tmp_path / "model")
    store = VectorCache(tmp_path / "cache")
    dataset = load_beir(dataset_folder)
    with Qwen3Embedder(model, backend=CPU) as copy:
        key = store.key(copy, dataset.corpus_sha256, len(dataset.documents))
        weights = model / "model.safetensors"
        before = weights.stat()
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0x01  # the last byte of the last tensor
        weights.write_bytes(bytes(data))
        os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert weights.stat().st_size == before.st_size
        assert weights.stat().st_mtime_ns == before.st_mtime_ns
        changed = store.key(copy, dataset.corpus_sha256, len(dataset.documents))
    assert changed["model_files"]["model.safetensors"] == hashlib.sha256(data).hexdigest()
    assert changed["model_files"]["config.json"] == key["model_files"]["config.json"]
    assert store.path(changed) != store.path(key)


def test_a_folder_in_place_of_the_cache_file_leaves_no_temporary_file(
    dataset_folder: Path,
    embedder: Qwen3Embedder,
    reranker: Qwen3Reranker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dataset, cache = load_beir(dataset_folder), tmp_path / "cache"
    first = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=cache)
    assert first.cache_file is not None
    first.cache_file.unlink()
    first.cache_file.mkdir()
    (first.cache_file / "kept").write_text("not ours")
    with caplog.at_level(logging.WARNING):
        again = evaluate(dataset, embedder, reranker, candidates=[5], cache_folder=cache)
    assert again.documents_embedded == len(dataset.documents) and again.cache_file is None
    assert again.stage1.metrics == first.stage1.metrics
    assert [path.name for path in cache.iterdir()] == [first.cache_file.name]
    assert (first.cache_file / "kept").read_text() == "not ours"
    assert len(caplog.records) == 1 and str(first.cache_file) in caplog.records[0].getMessage()


def test_faiss_and_numpy_search_agree() -> None:
    rng = np.random.default_rng(7)
    documents = rng.standard_normal((500, 24)).astype(np.float32)
    documents /= np.linalg.norm(documents, axis=1, keepdims=True)
    queries = rng.standard_normal((9, 24)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ documents.T), axis=1, kind="stable")[:, :40]
    assert (top_documents(documents, queries, 40, index="numpy") == exact).all()
    assert (top_documents(documents, queries, 40, index="faiss") == exact).all()
    assert (
        top_documents(documents, queries, 500, index="numpy")
        == np.argsort(-(queries @ documents.T), axis=1, kind="stable")
    ).all()
    with pytest.raises(ValueError, match="unknown index"):
        top_documents(documents, queries, 5, index="annoy")  # type: ignore[arg-type]


def test_evaluate_on_faiss_gives_the_same_results(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, tmp_path: Path
) -> None:
    # No repeated document: the two libraries may order exact ties differently.
    dataset = load_beir(write_dataset(tmp_path / "data", duplicate=False))
    by_numpy = evaluate(
        dataset, embedder, reranker, candidates=[4], cache_folder=tmp_path, index="numpy"
    )
    by_faiss = evaluate(
        dataset, embedder, reranker, candidates=[4], cache_folder=tmp_path, index="faiss"
    )
    assert by_faiss.search == "faiss"
    assert by_faiss.stage1.metrics == pytest.approx(by_numpy.stage1.metrics)
    assert by_faiss.reranking[0].rankings == by_numpy.reranking[0].rankings


def test_evaluate_checks_candidates(
    dataset_folder: Path, embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    dataset = load_beir(dataset_folder)
    for bad, message in (([], "is empty"), ([5, 5], "repeats"), ([0], "at least 1")):
        with pytest.raises(ValueError, match=message):
            evaluate(dataset, embedder, reranker, candidates=bad, cache=False)


def test_plot_is_a_png(
    dataset_folder: Path, embedder: Qwen3Embedder, reranker: Qwen3Reranker, tmp_path: Path
) -> None:
    result = evaluate(
        load_beir(dataset_folder), embedder, reranker, candidates=[2, 5, 20], cache=False
    )
    path = plot_results(result, tmp_path / "trade-off.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert "stage 1: embedding search" in result.table()
    data = json.loads(json.dumps(result.to_dict()))
    assert [row["candidates"] for row in data["rows"]] == [None, 2, 5, 20]


# The real command.


def test_console_script_end_to_end(
    dataset_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Path(sys.executable).with_name("qwen3-rag")
    cache, results, plot = tmp_path / "cache", tmp_path / "results.json", tmp_path / "plot.png"
    args = [str(dataset_folder), "--tiny", "--candidates", "3", "10", "--cache-dir", str(cache)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(
        [str(script), "eval", *args, "--output", str(results), "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no warning, and no progress bar outside a terminal
    out = run.stdout
    assert out.count("Dataset tiny-beir") == 1, out  # the dataset is summed up once
    assert "4 queries judged in the test split (1 other query" in out
    assert "stage 1: embedding search" in out and "+ reranking top 10" in out
    assert f"Wrote the results to {results}." in out
    data = json.loads(results.read_text())
    assert data["dataset"] == {"name": "tiny-beir", "split": "test", "documents": 25, "queries": 4}
    assert data["models"]["note"] == "tiny random test models"
    assert data["corpus"]["documents_embedded"] == 25 and not data["corpus"]["from_cache"]
    assert data["settings"]["candidates"] == [3, 10]
    assert [row["candidates"] for row in data["rows"]] == [None, 3, 10]
    for row in data["rows"]:
        assert set(row["metrics"]) == set(METRICS)
        assert all(0 <= value <= 1 for value in row["metrics"].values())
        assert row["seconds"] > 0
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    cache_file = Path(data["corpus"]["cache_file"])
    written = cache_file.stat().st_mtime_ns

    # Again: the vectors come from the cache file, which is left as it was.
    assert main(["eval", *args, "--output", str(results)]) == 0
    out = capsys.readouterr().out
    assert "Corpus vectors: read from the cache" in out
    again = json.loads(results.read_text())
    assert again["corpus"]["documents_embedded"] == 0 and again["corpus"]["from_cache"]
    assert cache_file.stat().st_mtime_ns == written
    assert [row["metrics"] for row in again["rows"]] == [row["metrics"] for row in data["rows"]]


# Bad files and arguments: one line, exit status 2, never a traceback.


def _jsonl(*records: Any) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


BAD_FILES: dict[str, tuple[str, str | None, str]] = {
    # name: (file, content (None: delete it), message)
    "corpus-missing": ("corpus.jsonl", None, "corpus file '{root}/corpus.jsonl' does not exist"),
    "queries-missing": ("queries.jsonl", None, "does not exist"),
    "corpus-empty": ("corpus.jsonl", "", "has no documents"),
    "queries-empty": ("queries.jsonl", "\n\n", "has no queries"),
    "qrels-header-only": ("qrels/test.tsv", "query-id\tcorpus-id\tscore\n", "no judgements"),
    "corpus-malformed": (
        "corpus.jsonl",
        _jsonl({"_id": "a", "text": "x"}, '{"_id": "b", "text": '),
        "corpus.jsonl:2: not a JSON object",
    ),
    "corpus-not-an-object": ("corpus.jsonl", _jsonl(["a", "x"]), "expected a JSON object"),
    "corpus-no-id": ("corpus.jsonl", _jsonl({"text": "x"}), 'corpus.jsonl:1: no "_id"'),
    "corpus-no-text": ("corpus.jsonl", _jsonl({"_id": "a"}), 'expected a "text" string'),
    "corpus-repeated-id": (
        "corpus.jsonl",
        _jsonl({"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}),
        "corpus.jsonl:2: \"_id\" 'a' was already used on line 1",
    ),
    "corpus-surrogate": (
        "corpus.jsonl",
        '{"_id": "a", "text": "bad \\ud800"}\n',
        "contains a lone surrogate",
    ),
    "qrels-unknown-document": (
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq-tea\tnope\t1\n",
        "test.tsv:2: document 'nope' is not in 'corpus.jsonl'",
    ),
    "qrels-unknown-query": (
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq-nope\t1\t1\n",
        "test.tsv:2: query 'q-nope' is not in 'queries.jsonl'",
    ),
    "qrels-columns": ("qrels/test.tsv", "q-tea\t1\n", "expected 3 tab-separated columns"),
    "qrels-score": (
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq-tea\t1\t1\nq-tea\t2\thigh\n",
        "the score 'high' is not an integer",
    ),
    "qrels-conflict": (
        "qrels/test.tsv",
        "q-tea\t1\t1\nq-tea\t1\t2\n",
        "were judged 1 on line 1, now 2",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_is_one_line(
    name: str, dataset_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file, content, message = BAD_FILES[name]
    path = dataset_folder / file
    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    assert main(["eval", str(dataset_folder), "--tiny", "--cache-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # found before any model is loaded
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    assert message.replace("{root}", str(dataset_folder)) in lines[0]


def test_bad_bytes_are_one_line_with_their_line(
    dataset_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset_folder / "queries.jsonl").write_bytes(b'{"_id": "q", "text": "ok"}\n\xff\xfe\n')
    assert main(["eval", str(dataset_folder), "--tiny"]) == 2
    assert "queries.jsonl:2: not UTF-8 text" in capsys.readouterr().err


BAD_ARGUMENTS: dict[str, tuple[list[str], str]] = {
    "no-dataset": ([], "give DATASET"),
    "missing-folder": (["{root}/nowhere"], "dataset folder '{root}/nowhere' does not exist"),
    "missing-split": (["{data}", "--split", "train"], "the splits there: dev, test"),
    "zero-candidates": (["{data}", "--candidates", "10", "0"], "--candidates must be at least 1"),
    "repeated-candidates": (["{data}", "--candidates", "5", "5"], "--candidates repeats 5"),
    "plot-not-png": (["{data}", "--plot", "{root}/plot.jpg"], "give a name ending in .png"),
    "output-folder-missing": (
        ["{data}", "--output", "{root}/no/such/results.json"],
        "does not exist",
    ),
    "output-is-a-folder": (["{data}", "--output", "{root}"], "is a folder"),
    "cache-and-no-cache": (["{data}", "--no-cache", "--cache-dir", "{root}"], "cannot be combined"),
    "tiny-and-model": (["{data}", "--embedding-model", "x"], "--tiny cannot be combined"),
    "device-on-server": (
        ["{data}", "--backend", "server", "--base-url", "http://h:1", "--device", "cpu"],
        "--device is not a setting of --backend server",
    ),
}


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_bad_arguments_are_one_line(
    name: str, dataset_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, message = BAD_ARGUMENTS[name]
    argv = [a.replace("{root}", str(tmp_path)).replace("{data}", str(dataset_folder)) for a in args]
    if name != "tiny-and-model":
        argv.append("--tiny")
    else:
        argv.insert(1, "--tiny")
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert message.replace("{root}", str(tmp_path)) in err


# Modules an argument or file error must be found without.
HEAVY_MODULES = {
    "torch",
    "transformers",
    "qwen3_core.embedder",
    "qwen3_core.reranker",
    "ir_measures",
    "matplotlib",
    "faiss",
}


def test_errors_are_found_before_torch_is_imported(dataset_folder: Path, tmp_path: Path) -> None:
    """Through the installed script, as a user runs it: one line, exit status 2, and the
    import log shows neither the engine nor the evaluation's libraries."""
    (dataset_folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq-tea\tx\t1\n")
    script = Path(sys.executable).with_name("qwen3-rag")
    cases = {
        "unknown-document": [str(dataset_folder), "--tiny"],
        "bad-candidates": [str(dataset_folder), "--candidates", "0"],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-X", "importtime", str(script), "eval", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in cases.items()
    }
    for name, process in running.items():
        _, err = process.communicate(timeout=300)
        log = [line for line in err.splitlines() if line.startswith("import time:")]
        rest = [line for line in err.splitlines() if not line.startswith("import time:")]
        modules = {line.rsplit("|", 1)[1].strip() for line in log}
        assert process.returncode == 2, (name, err)
        assert len(rest) == 1 and rest[0].startswith("error: "), (name, rest)
        assert "qwen3_core.cli.main" in modules  # the log is read correctly
        assert not modules & HEAVY_MODULES, (name, modules & HEAVY_MODULES)


def _import_log(err: str) -> tuple[set[str], list[str]]:
    """The modules ``-X importtime`` logged, and the other lines of stderr."""
    log = [line for line in err.splitlines() if line.startswith("import time:")]
    rest = [line for line in err.splitlines() if not line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in log}, rest


def _run_all(
    commands: dict[str, list[str]], env: dict[str, str] | None = None
) -> dict[str, tuple[int, str, str]]:
    """Each command line of ``qwen3-rag``, through the installed script, side by side:
    name -> (exit status, stdout, stderr)."""
    script = Path(sys.executable).with_name("qwen3-rag")
    running = {
        name: subprocess.Popen(
            [sys.executable, "-X", "importtime", str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, args in commands.items()
    }
    done = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        done[name] = (process.returncode, out, err)
    return done


# name: (files written into the dataset, arguments after the dataset, the error line's text)
EARLY_ERRORS: dict[str, tuple[dict[str, str], list[str], str]] = {
    "grade-above-range": (
        {"qrels/test.tsv": "q-tea\ttea-0\t1\nq-tea\ttea-1\t1001\n"},
        [],
        "test.tsv:2: the score 1001 is out of range",
    ),
    "grade-below-range": (
        {"qrels/test.tsv": "q-tea\ttea-0\t-1001\n"},
        [],
        "test.tsv:1: the score -1001 is out of range",
    ),
    # 2**32 - 2: read as -2 by 32-bit C code; 2**63 - 1 crashed it; 10**23 is no C long.
    "grade-past-32-bits": (
        {"qrels/test.tsv": "q-tea\ttea-0\t4294967294\n"},
        [],
        "out of range",
    ),
    "grade-largest-64-bit": (
        {"qrels/test.tsv": "q-tea\ttea-0\t9223372036854775807\n"},
        [],
        "out of range",
    ),
    "grade-huge": ({"qrels/test.tsv": "q-tea\ttea-0\t" + "9" * 23 + "\n"}, [], "out of range"),
    # The first line of a file without a header is a judgement, not a header to skip.
    "first-grade-decimal": (
        {"qrels/test.tsv": "q-tea\ttea-0\t1.0\nq-tea\ttea-1\t1\n"},
        [],
        "test.tsv:1: the score '1.0' is not an integer",
    ),
    "first-grade-word": (
        {"qrels/test.tsv": "q-tea\ttea-0\thigh\n"},
        [],
        "test.tsv:1: the score 'high' is not an integer",
    ),
    "grade-with-underscore": (
        {"qrels/test.tsv": "query-id\tcorpus-id\tscore\nq-tea\ttea-0\t1_0\n"},
        [],
        "test.tsv:2: the score '1_0' is not an integer",
    ),
    "corpus-nested-deeply": (
        {"corpus.jsonl": '{"_id": "a", "text": "x"}\n{"_id": "b", "text": ' + "[" * 100_000},
        [],
        "corpus.jsonl:2: nested too deeply",
    ),
    "queries-nested-deeply": (
        {"queries.jsonl": "{" + '"a": {' * 100_000},
        [],
        "queries.jsonl:1: nested too deeply",
    ),
    "cache-dir-is-a-file": (
        {},
        ["--cache-dir", "/dev/null"],
        "--cache-dir '/dev/null' is not a folder",
    ),
    "cache-dir-under-a-file": (
        {},
        ["--cache-dir", "{data}/corpus.jsonl/vectors"],
        "--cache-dir '{data}/corpus.jsonl/vectors': '{data}/corpus.jsonl' is not a folder",
    ),
}


def test_early_errors_through_the_command(tmp_path: Path) -> None:
    """Grades, headers, nesting and the cache folder: one line and exit status 2 from the
    installed script, before the engine or the metric library is imported."""
    commands = {}
    for name, (files, args, _) in EARLY_ERRORS.items():
        data = write_dataset(tmp_path / name)
        for file, content in files.items():
            (data / file).write_text(content)
        args = [arg.replace("{data}", str(data)) for arg in args]
        commands[name] = ["eval", str(data), "--tiny", *args]
    for name, (status, out, err) in _run_all(commands).items():
        modules, rest = _import_log(err)
        message = EARLY_ERRORS[name][2].replace("{data}", str(tmp_path / name))
        assert status == 2, (name, status, rest[-3:])
        assert out == "" and len(rest) == 1 and rest[0].startswith("error: "), (name, rest)
        assert message in rest[0], (name, rest[0])
        assert "qwen3_core.cli.main" in modules  # the log is read correctly
        assert not modules & HEAVY_MODULES, (name, modules & HEAVY_MODULES)


def test_negative_grades_through_the_command(dataset_folder: Path, tmp_path: Path) -> None:
    """TREC's -2 (junk): not relevant; a query judged only below zero scores 0 (its C code
    used to crash on it)."""
    (dataset_folder / "qrels" / "test.tsv").write_text(
        "q-capital\tcapital-0\t2\nq-capital\tcapital-1\t-2\nq-tea\ttea-0\t-2\n"
    )
    results = tmp_path / "results.json"
    args = ["eval", str(dataset_folder), "--tiny", "--candidates", "3", "--no-cache"]
    ((status, out, err),) = _run_all({"run": [*args, "--output", str(results)]}).values()
    assert status == 0, _import_log(err)[1][-5:]
    rows = json.loads(results.read_text())["rows"]
    assert "2 queries judged" in out
    for row in rows:  # q-tea adds nothing: no mean can pass one half
        assert all(0 <= value <= 0.5 for value in row["metrics"].values()), row


def test_model_settings_are_checked_before_a_model_is_loaded(
    dataset_folder: Path, test_models: ModelPaths, tmp_path: Path
) -> None:
    """Found from the models' own files (config and tokenizer), before torch is imported."""
    embedding, reranking = str(test_models.embedding), str(test_models.reranker)
    config = json.loads((test_models.embedding / "config.json").read_text())
    hidden, positions = config["hidden_size"], config["max_position_embeddings"]
    cases: dict[str, tuple[list[str], str]] = {
        "dimensions": (
            ["--dimensions", str(hidden + 1)],
            f"--dimensions {hidden + 1} is more than the embedding model's {hidden}",
        ),
        "max-length-too-short": (["--max-length", "3"], "max_length=3 leaves no room"),
        "max-length-past-positions": (
            ["--max-length", str(positions + 1)],
            f"--max-length {positions + 1} is more than the embedding model's {positions}",
        ),
        "reranker-is-an-embedding-model": (
            ["--reranker-model", embedding],
            "not a Qwen3 reranker model",
        ),
        "reranker-missing": (
            ["--reranker-model", str(tmp_path / "nowhere")],
            f"model folder '{tmp_path / 'nowhere'}' does not exist",
        ),
        "embedding-is-a-reranker": (
            ["--embedding-model", reranking],
            "not a Qwen3 embedding model",
        ),
    }
    base = ["eval", str(dataset_folder), "--embedding-model", embedding]
    base += ["--reranker-model", reranking, "--cache-dir", str(tmp_path / "cache")]
    commands = {name: [*base, *args] for name, (args, _) in cases.items()}
    commands["tiny"] = ["eval", str(dataset_folder), "--tiny", "--dimensions", str(hidden + 1)]
    for name, (status, out, err) in _run_all(commands).items():
        modules, rest = _import_log(err)
        assert status == 2, (name, status, rest[-3:])
        assert len(rest) == 1 and rest[0].startswith("error: "), (name, rest)
        assert "Loading" not in out, (name, out)
        assert out.count("Dataset tiny-beir") == 1, (name, out)
        if name == "tiny":  # the tiny models are built with torch: only the loading is spared
            assert "is more than the embedding model's" in rest[0]
            continue
        assert cases[name][1] in rest[0], (name, rest[0])
        assert not modules & HEAVY_MODULES, (name, modules & HEAVY_MODULES)


def test_importing_the_package_imports_no_evaluation_library() -> None:
    code = (
        "import sys, qwen3_core, qwen3_core.evaluation\n"
        "from qwen3_core.evaluation import load_beir, DatasetError\n"
        "print(sorted(m for m in ('ir_measures', 'matplotlib', 'faiss', 'torch') "
        "if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert run.stdout.strip() == "[]"


def test_dataset_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="give the dataset folder, or all three files"):
        load_beir(None, corpus_file=tmp_path / "corpus.jsonl")
    assert issubclass(DatasetError, ValueError)


def test_settings_that_change_the_vectors_change_the_cache_key(
    test_models: ModelPaths, dataset_folder: Path, tmp_path: Path
) -> None:
    """Another decoder, kernel, quantization or transformers argument gives other vectors
    (from 1e-6 on): each has a key of its own. A batch size changes only the speed."""
    store = VectorCache(tmp_path)
    dataset = load_beir(dataset_folder)
    settings: dict[str, dict[str, Any]] = {
        "defaults": {},
        "decoder": {"decoder": "transformers"},
        "kernel": {"cpu_linear": "torch"},
        "int8": {"quantization": "int8"},
        "model_kwargs": {"model_kwargs": {"attn_implementation": "eager"}},
        "batch size": {"max_batch_tokens": 64},
    }
    paths = {}
    for name, given in settings.items():
        with Qwen3Embedder(
            test_models.embedding, backend=TransformersOptions(device="cpu", **given)
        ) as engine:
            key = store.key(engine, dataset.corpus_sha256, len(dataset.documents))
            paths[name] = store.path(key)
    assert paths["batch size"] == paths["defaults"]
    del paths["batch size"]
    assert len(set(paths.values())) == len(paths), paths
