"""``qwen3-rag demo``: the two-stage search, its results table, and its errors as one clear line
(caught before torch is imported wherever the arguments alone show them)."""

from __future__ import annotations

import argparse
import builtins
import json
import math
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from qwen3_core import ModelKindError, Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.cli.checks import check_demo_arguments
from qwen3_core.cli.main import main
from qwen3_core.cli.parser import build_parser
from qwen3_core.demo.corpus import (
    LONG_SAMPLE_DOCUMENT,
    SAMPLE_DOCUMENTS,
    CorpusError,
    load_corpus_file,
    read_corpus,
    sample_corpus,
)
from qwen3_core.demo.search import TwoStageSearch
from qwen3_core.testing import SHAPES, ModelPaths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def tiny_models_here(test_models: ModelPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN3_RAG_TEST_MODELS", str(test_models.embedding.parents[1]))


def test_two_stage_search_matches_the_engines(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    search = TwoStageSearch(embedder, reranker)
    search.index(corpus)
    outcome = search.search("什么是重力？", top_k=8, top_n=3)
    similarity = embedder.embed_documents(corpus) @ embedder.embed_queries(["什么是重力？"])[0]
    top8 = list(np.argsort(-similarity, kind="stable")[:8])
    scores = reranker.score("什么是重力？", [corpus[i] for i in top8])
    best = list(np.argsort(-scores, kind="stable")[:3])
    assert [h.document_id for h in outcome.hits] == [top8[i] for i in best]
    assert [h.original_rank for h in outcome.hits] == [i + 1 for i in best]
    for hit, i in zip(outcome.hits, best, strict=True):
        assert hit.rerank_score == pytest.approx(scores[i], abs=1e-6)
        assert hit.embedding_score == pytest.approx(similarity[top8[i]], abs=1e-5)
        assert hit.document == corpus[hit.document_id]
    assert outcome.candidates == 8 and outcome.embedding_seconds >= 0


def test_demo_prints_both_queries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "ranking is random" in out and "Embedded 19 documents" in out
    for query in ["中国的首都是哪里？", "什么是重力？"]:
        assert f"Query: {query}" in out
    assert out.count("stage 1  embedding search, top 8 of 19 documents") == 2
    assert out.count("stage 2  reranking 8 candidates") == 2
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 6


def test_own_corpus_jsonl_and_queries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"document {i}"}) for i in range(5)))
    assert main(["demo", "--tiny", "--corpus", str(corpus), "--query", "doc", "--top-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "Embedded 5 documents" in out and "top 5 of 5 documents" in out
    assert len([line for line in out.splitlines() if "document " in line and "  " in line]) == 2


def _inputs(monkeypatch: pytest.MonkeyPatch, answers: list[object]) -> None:
    feed: Iterator[object] = iter(answers)

    def fake_input(prompt: str = "") -> str:
        answer = next(feed)
        if isinstance(answer, BaseException):
            raise answer
        return str(answer)

    monkeypatch.setattr(builtins, "input", fake_input)


@pytest.mark.parametrize("ending", ["quit", "Q", "exit", EOFError(), KeyboardInterrupt()])
def test_interactive_loop_ends_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ending: object
) -> None:
    _inputs(monkeypatch, ["", "什么是重力？", ending])
    assert main(["demo", "--tiny", "--interactive", "--query", "x"]) == 0
    out = capsys.readouterr().out
    assert out.count("Query: 什么是重力？") == 1


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "has no documents"),
        (b"\n  \n", "has no documents"),
        (b"\x00\x01binary", "looks binary"),
        (b"\xff\xfe\xfa not utf8", "is not UTF-8 text"),
        (b'{"text": "ok"}\n{"title": "no text"}\n', 'expected a JSON object with a "text"'),
    ],
)
def test_bad_corpus_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    assert main(["demo", "--tiny", "--corpus", str(corpus)]) == 2
    assert message in _error_line(capsys)


def test_missing_model_suggests_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--embedding-model", str(tmp_path / "nope")]) == 2
    err = _error_line(capsys)
    assert "does not exist" in err and "--tiny" in err


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("--embedding-model", "not a Qwen3 embedding model: pass a reranker with --reranker-model"),
        (
            "--reranker-model",
            "not a Qwen3 reranker model: pass an embedding model with --embedding-model",
        ),
    ],
)
def test_wrong_model_kind_names_the_option_to_use(
    test_models: ModelPaths, capsys: pytest.CaptureFixture[str], given: str, expected: str
) -> None:
    """A model of the other kind: the command line names its option, not the Python class the
    library's own message names."""
    # The folder of the other kind, given to both options: the embedding model loads first.
    folder = test_models.reranker if given == "--embedding-model" else test_models.embedding
    assert main(["demo", "--embedding-model", str(folder), "--reranker-model", str(folder)]) == 2
    err = _error_line(capsys)
    assert err.startswith(f"error: '{folder}' ") and err.endswith(expected), err
    assert "Qwen3Reranker" not in err and "Qwen3Embedder" not in err
    # The library keeps its own wording for Python callers.
    engine = Qwen3Embedder if given == "--embedding-model" else Qwen3Reranker
    loader = "load a reranker with Qwen3Reranker" if engine is Qwen3Embedder else "load it with"
    with pytest.raises(ModelKindError, match=f": {loader}"):
        engine(folder)


def test_corpus_file_plain_lines(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("first doc\n\n  second doc  \n")
    assert load_corpus_file(corpus) == ["first doc", "second doc"]
    with pytest.raises(CorpusError, match="is not a file"):
        load_corpus_file(tmp_path)


def test_console_script_runs(test_models: ModelPaths) -> None:
    script = Path(sys.executable).with_name("qwen3-rag")
    result = subprocess.run(
        [str(script), "demo", "--tiny", "--query", "什么是重力？", "--top-k", "4", "--top-n", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Query: 什么是重力？" in result.stdout and "top 4 of 19" in result.stdout
    # The load time, once the models are in, and nothing else on stderr: no warning, no bar.
    assert re.search(
        r"^Loaded the embedding and reranker models in \d+\.\d s\.$", result.stdout, re.M
    )
    assert result.stderr == ""


def test_unreadable_corpus_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A corpus path that is a file but fails to read (an I/O error) is one line too."""
    unreadable = Path("/proc/self/mem")  # a regular file whose read fails with EIO
    if not unreadable.is_file():
        pytest.skip("needs Linux's /proc/self/mem")
    assert main(["demo", "--tiny", "--corpus", str(unreadable)]) == 2
    assert "cannot be read" in _error_line(capsys)


# The real command in subprocesses, as a user runs it: one line on stderr, a non-zero exit,
# never a traceback. Started together, since those that load a model pay for importing torch.
# Each case: the entry point ("script": the installed qwen3-rag, "module": python -m
# qwen3_core.cli), the arguments, the error's text, and whether the error needs the engine.
CLI_FAILURES = {
    "missing-corpus": (
        "script",
        ["--tiny", "--corpus", "{root}/missing.txt"],
        "does not exist",
        False,
    ),
    "empty-corpus": (
        "module",
        ["--tiny", "--corpus", "{root}/empty.txt"],
        "has no documents",
        False,
    ),
    "binary-corpus": ("script", ["--tiny", "--corpus", "{root}/binary.bin"], "looks binary", False),
    "bad-top-k": ("module", ["--tiny", "--top-k", "0"], "--top-k must be at least 1", False),
    "model-not-found": (
        "script",
        ["--embedding-model", "{root}/no-such-model"],
        "does not exist",
        True,
    ),
    "query-not-utf8": (
        "module",
        ["--tiny", "--query", "\udcff\udcfe"],
        "contains a lone surrogate",
        False,
    ),
}
# Modules that only loading a model needs: an argument error must be found without them.
ENGINE_MODULES = {"torch", "transformers", "qwen3_core.embedder", "qwen3_core.reranker"}


@pytest.fixture(scope="module")
def cli_runs(
    test_models: ModelPaths, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str, set[str]]]:
    """Per case: the exit status, stdout, stderr without the import log, and the modules the
    process imported (from ``python -X importtime``, which logs every import on stderr)."""
    root = tmp_path_factory.mktemp("cli")
    (root / "empty.txt").write_bytes(b"\n \n")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 64)
    env = {**os.environ, "QWEN3_RAG_TEST_MODELS": str(test_models.embedding.parents[1])}
    script = Path(sys.executable).with_name("qwen3-rag")
    running = {}
    for name, (entry, args, _, _) in CLI_FAILURES.items():
        target = [str(script)] if entry == "script" else ["-m", "qwen3_core.cli"]
        argv = [a.replace("{root}", str(root)) for a in args]
        running[name] = subprocess.Popen(
            # A query that is not UTF-8 reaches Python as lone surrogates (surrogateescape).
            [os.fsencode(a) for a in [sys.executable, "-X", "importtime", *target, "demo", *argv]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    results = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        log = [line for line in err.decode().splitlines() if line.startswith("import time:")]
        rest = [line for line in err.decode().splitlines() if not line.startswith("import time:")]
        modules = {line.rsplit("|", 1)[1].strip() for line in log}
        results[name] = (process.returncode, out.decode(), "\n".join(rest), modules)
    return results


@pytest.mark.parametrize("name", list(CLI_FAILURES))
def test_command_fails_with_one_line(
    cli_runs: dict[str, tuple[int, str, str, set[str]]], name: str
) -> None:
    returncode, _, err, _ = cli_runs[name]
    assert returncode == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert CLI_FAILURES[name][2] in lines[0]


@pytest.mark.parametrize("name", [name for name, case in CLI_FAILURES.items() if not case[3]])
def test_argument_errors_never_import_torch(
    cli_runs: dict[str, tuple[int, str, str, set[str]]], name: str
) -> None:
    """The arguments and the corpus file are checked before the engine is imported: a typo
    is reported at once, not after seconds of importing torch."""
    returncode, _, _, modules = cli_runs[name]
    assert returncode == 2
    assert "qwen3_core.cli.main" in modules  # the log is read correctly
    assert not modules & ENGINE_MODULES


def test_the_import_log_shows_the_engine_when_a_model_is_loaded(
    cli_runs: dict[str, tuple[int, str, str, set[str]]],
) -> None:
    """The check above can fail: a command that gets as far as loading a model imports torch."""
    assert ENGINE_MODULES.issubset(cli_runs["model-not-found"][3])


def test_own_corpus_without_a_query_says_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "docs.txt"
    corpus.write_text("one document\nanother document\n")
    # Not a terminal (as here): one line naming the options, before any model is loaded.
    assert main(["demo", "--tiny", "--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "without a query" in err and "--query" in err and "--interactive" in err


def test_own_corpus_without_a_query_on_a_terminal_asks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    corpus = tmp_path / "docs.txt"
    corpus.write_text("one document\nanother document\n")
    monkeypatch.setattr("sys.stdin", Terminal("another\nquit\n"))
    assert main(["demo", "--tiny", "--corpus", str(corpus), "--top-n", "1"]) == 0
    captured = capsys.readouterr()
    assert "Interactive search" in captured.err and "Query: another" in captured.out


def _result_fields(out: str) -> list[list[str]]:
    """Every results row: rank, doc, relevance, log-odds, similarity, embedding rank,
    document text."""
    rows = [line.split(maxsplit=6) for line in out.splitlines()]
    return [fields for fields in rows if len(fields) == 7 and fields[0].isdigit()]


def _result_rows(out: str) -> list[tuple[str, str]]:
    """(doc, document text) of every results row, in order."""
    return [(fields[1], fields[6]) for fields in _result_fields(out)]


def _search_all(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[str, list[tuple[str, str]]]:
    """Runs the command on ``corpus`` with every document in the results."""
    args = ["demo", "--tiny", "--corpus", str(corpus), "--query", "number", "--top-k", "9"]
    assert main([*args, "--top-n", "9"]) == 0
    out = capsys.readouterr().out
    return out, _result_rows(out)


def test_results_name_documents_by_their_jsonl_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "docs.jsonl"
    records = [{"id": f"doc-{i}", "text": f"text number {i}"} for i in range(3)]
    records += [{"id": 100 + i, "text": f"text number {i}"} for i in range(3, 5)]
    corpus.write_text("\n".join(json.dumps(record) for record in records))
    out, rows = _search_all(corpus, capsys)
    assert len(rows) == 5
    expected = {"doc-0": 0, "doc-1": 1, "doc-2": 2, "103": 3, "104": 4}
    for doc, text in rows:
        assert text == f"text number {expected[doc]}"
    assert 'doc             the "id" field in docs.jsonl' in out


def test_results_number_jsonl_records_from_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "docs.jsonl"
    # A blank line between records: records are counted, not lines.
    lines = [json.dumps({"text": f"text number {i}"}) for i in range(1, 5)]
    corpus.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    out, rows = _search_all(corpus, capsys)
    assert sorted(rows) == [(str(i), f"text number {i}") for i in range(1, 5)]
    assert "doc             the record number in docs.jsonl" in out


def test_results_name_text_lines_by_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "notes.txt"
    corpus.write_text("text on line 1\n\ntext on line 3\ntext on line 4\fstill line 4\n")
    out, rows = _search_all(corpus, capsys)
    assert sorted(doc for doc, _ in rows) == ["1", "3", "4"]
    for doc, text in rows:
        assert text.startswith(f"text on line {doc}")
    assert "doc             the line number in notes.txt" in out


def test_results_table_says_what_its_columns_hold(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tiny", "--query", "什么是重力？", "--top-k", "5", "--top-n", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("Columns:") == 1  # the legend, once
    header = next(line for line in out.splitlines() if line.endswith("  document"))
    assert header.split() == [
        "rank",
        "doc",
        "relevance",
        "log-odds",
        "similarity",
        "embedding",
        "rank",
        "document",
    ]
    rows = _result_fields(out)
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    for row in rows:  # the sample corpus, numbered from 1
        document = sample_corpus().documents[int(row[1]) - 1]
        assert document.startswith(row[6].removesuffix("..."))
        # P(yes) is the sigmoid of the log-odds shown beside it (both rounded).
        assert float(row[2]) == pytest.approx(1 / (1 + math.exp(-float(row[3]))), abs=1e-3)
    # Best first by log-odds; every one of the 5 candidates, with its rank before reranking.
    assert [float(row[3]) for row in rows] == sorted((float(row[3]) for row in rows), reverse=True)
    assert sorted(int(row[5]) for row in rows) == [1, 2, 3, 4, 5]


def test_chunked_mode_shows_the_passage_that_scored(
    tmp_path: Path, reranker: Qwen3Reranker, capsys: pytest.CaptureFixture[str]
) -> None:
    """--long-documents chunk ranks each document by its best window and shows that
    passage; the scores are the engine's own for the same settings."""
    filler = "The committee met on Tuesday to discuss the budget for next year. " * 8
    documents = [filler + f"Passage {i} says the capital of China is Beijing." for i in range(3)]
    corpus = tmp_path / "long.txt"
    corpus.write_text("\n".join(documents) + "\n")
    query = "capital of China"
    args = ["demo", "--tiny", "--corpus", str(corpus), "--query", query, "--top-k", "3"]
    assert (
        main([*args, "--top-n", "3", "--long-documents", "chunk", "--max-document-tokens", "24"])
        == 0
    )
    out = capsys.readouterr().out
    assert "the passage that scored best" in out
    hits = reranker.rerank(query, documents, max_document_tokens=24, long_documents="chunk")
    rows = _result_fields(out)
    assert sorted(int(row[1]) for row in rows) == [1, 2, 3]  # lines, numbered from 1
    log_odds = [float(row[3]) for row in rows]
    assert log_odds == sorted(log_odds, reverse=True)
    for row in rows:
        hit = next(h for h in hits if h.index == int(row[1]) - 1)
        assert float(row[3]) == pytest.approx(hit.logit, abs=1e-3)
        passage = hit.document[slice(*hit.span)]
        shown = row[6].removeprefix("...").removesuffix("...")
        assert " ".join(passage.split()).startswith(shown) and hit.span != (0, len(hit.document))


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"id": "a", "text": "x"}, {"text": "y"}], 'no "id", while other records have one'),
        ([{"id": 7, "text": "x"}, {"id": "7", "text": "y"}], "was already used on line 1"),
        ([{"id": True, "text": "x"}], '"id" must be a string or an integer'),
        ([{"id": 1.5, "text": "x"}], '"id" must be a string or an integer'),
        ([{"id": " ", "text": "x"}], '"id" is empty'),
        ([{"id": "a", "text": "bad \ud800 text"}], '"text" contains a lone surrogate'),
        # BEIR's corpus.jsonl: "_id" and "title".
        ([{"id": "a", "_id": "a", "text": "x"}], 'both "id" and "_id": keep one'),
        ([{"_id": "a", "title": 3, "text": "x"}], '"title" must be a string'),
        ([{"_id": "a", "text": "x"}, {"text": "y"}], 'no "_id", while other records have one'),
        ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "\"_id\" 'a' was already used"),
        ([{"_id": "a", "title": "bad \ud800", "text": "x"}], '"title" contains a lone surrogate'),
    ],
)
def test_bad_jsonl_records_are_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    records: list[dict[str, object]],
    message: str,
) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps(record) for record in records))
    assert main(["demo", "--tiny", "--corpus", str(corpus), "--query", "q"]) == 2
    assert message in _error_line(capsys)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "0"], "--top-k must be at least 1, got 0"),
        (["--top-n", "-1"], "--top-n must be at least 1, got -1"),
        (["--top-k", "2", "--top-n", "3"], "--top-n (3) cannot be more than --top-k (2)"),
        (["--reranker-model", "some/model"], "--tiny cannot be combined with --embedding-model"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--dtype", "int4"], "unknown dtype 'int4'"),
        (["--query", " "], "--query is empty"),
        (["--backend", "server"], "--backend server needs the servers' address"),
        (["--backend", "vllm", "--device", "cpu"], "--device is not a setting of --backend vllm"),
        (["--backend", "openvino", "--dtype", "bf16"], "--dtype is not a setting of --backend"),
        (["--base-url", "http://localhost:8000"], "--base-url is not a setting of --backend"),
        (["--max-document-tokens", "0"], "--max-document-tokens must be at least 1, got 0"),
        (
            ["--backend", "vllm", "--quantization", "int8"],
            "--quantization is not a setting of --backend vllm (only of --backend transformers)",
        ),
        (
            ["--backend", "openvino", "--quantization", "int8"],
            "--quantization is not a setting of --backend openvino (only of --backend "
            "transformers)",
        ),
        (
            ["--quantization", "int8", "--device", "cuda:1"],
            "--quantization int8 runs on CPU only, not on cuda:1: leave --device out or pass "
            "--device cpu",
        ),
        (
            ["--quantization", "int8", "--dtype", "bf16"],
            "--quantization int8 works from float32 weights, not bfloat16: leave --dtype out or "
            "pass --dtype float32",
        ),
    ],
)
def test_bad_arguments_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["demo", "--tiny", *args]) == 2
    assert message in _error_line(capsys)


@pytest.mark.parametrize(
    ("given", "passed"),
    [(["--dtype", "auto"], None), (["--dtype", "BF16"], "bfloat16"), ([], None)],
)
def test_dtype_auto_lets_the_engine_choose(given: list[str], passed: str | None) -> None:
    args: argparse.Namespace = build_parser().parse_args(["demo", "--tiny", *given])
    backend = check_demo_arguments(args, stdin_is_terminal=False).backend
    assert isinstance(backend, TransformersOptions) and backend.dtype == passed


def test_read_corpus_labels(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("first doc\r\n\r\n  second doc  \r\n")
    read = read_corpus(corpus)
    assert read.documents == ["first doc", "second doc"] and read.labels == ["1", "3"]


def _command(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    stdin: str | int | None = None,
    python: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The installed ``qwen3-rag`` (or ``python`` with its arguments), as a user runs it."""
    program = [sys.executable, *python] if python is not None else [str(QWEN3_RAG)]
    return subprocess.run(
        [*program, *args],
        input=stdin if isinstance(stdin, str) else None,
        stdin=stdin if isinstance(stdin, int) else None,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


QWEN3_RAG = Path(sys.executable).with_name("qwen3-rag")


def test_version_is_the_installed_packages() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"$', pyproject, re.M)
    assert version is not None
    result = _command(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"qwen3-rag {version.group(1)}\n"
    assert result.stderr == ""


def test_quantization_int8_runs_the_int8_engine(
    test_models: ModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quantization int8 is TransformersOptions(quantization="int8") on the CPU: the scores
    shown are the int8 engine's."""
    query = "什么是重力？"
    args = ["demo", "--tiny", "--quantization", "int8", "--query", query]
    parsed = build_parser().parse_args([*args, "--top-k", "19", "--top-n", "19"])
    backend = check_demo_arguments(parsed, stdin_is_terminal=False).backend
    assert backend == TransformersOptions(device="cpu", quantization="int8")
    assert main([*args, "--top-k", "19", "--top-n", "19"]) == 0
    rows = _result_fields(capsys.readouterr().out)
    documents = sample_corpus().documents
    int8 = Qwen3Reranker(test_models.reranker, backend=backend)
    exact = Qwen3Reranker(test_models.reranker, backend=TransformersOptions(device="cpu"))
    int8_logits = {hit.index: hit.logit for hit in int8.rerank(query, documents)}
    exact_logits = {hit.index: hit.logit for hit in exact.rerank(query, documents)}
    assert len(rows) == len(documents)
    for row in rows:
        assert float(row[3]) == pytest.approx(int8_logits[int(row[1]) - 1], abs=1e-3)
    # The two engines differ by more than the rounding shown: the int8 one was used.
    assert max(abs(int8_logits[i] - exact_logits[i]) for i in int8_logits) > 2e-3


BUILDING = "Building the offline tiny models (first run only, about 20 s)...\n"


def test_first_tiny_run_says_it_builds_the_models(tmp_path: Path) -> None:
    env = {**os.environ, "QWEN3_RAG_TEST_MODELS": str(tmp_path / "models")}
    args = ["demo", "--tiny", "--query", "什么是重力？", "--top-k", "2", "--top-n", "1"]
    first = _command(args, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr == BUILDING and "Query: 什么是重力？" in first.stdout
    assert BUILDING.strip() not in first.stdout
    again = _command(args, env=env)  # built: reused in silence
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert first.stdout.count("Query:") == again.stdout.count("Query:") == 1


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    return path


def test_beir_corpus_reads_its_ids_and_titles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A BEIR corpus.jsonl as it is: documents named by "_id", each title before its text with
    a space between (as BEIR's sentence-transformers models and MTEB join them)."""
    records = [
        {"_id": "beijing", "title": "Beijing", "text": "text number 1 is about a capital."},
        {"_id": 42, "title": "", "text": "text number 2 has an empty title."},
        {"_id": "gravity", "text": "text number 3 has no title."},
    ]
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    out, rows = _search_all(corpus, capsys)
    expected = {
        "beijing": "Beijing text number 1 is about a capital.",
        "42": "text number 2 has an empty title.",
        "gravity": "text number 3 has no title.",
    }
    assert dict(rows) == expected
    assert 'doc             the "_id" field in corpus.jsonl' in out


INTERACTIVE = ["demo", "--tiny", "--interactive", "--query", "什么是重力？", "--top-k", "2"]


def test_piped_queries_get_results_alone() -> None:
    """Queries piped in: stdout holds the results alone, and there is no prompt anywhere."""
    result = _command([*INTERACTIVE, "--top-n", "1"], stdin="长城\n\nquit\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "query>" not in result.stdout and "Interactive search" not in result.stdout
    assert [line for line in result.stdout.splitlines() if line.startswith("Query:")] == [
        "Query: 什么是重力？",
        "Query: 长城",
    ]


def test_prompts_on_a_terminal_go_to_stderr() -> None:
    """Queries typed on a terminal: the prompts go to stderr, the results to stdout."""
    import pty

    controller, terminal = pty.openpty()
    try:
        os.write(controller, "长城\nquit\n".encode())
        result = _command([*INTERACTIVE, "--top-n", "1"], stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert "Interactive search" in result.stderr and result.stderr.count("query> ") == 2
    assert "query>" not in result.stdout and "Query: 长城" in result.stdout


# Runs a module as `python -m` does, in an interpreter that cannot find torch, as if it were
# not installed: the import system's own path finder, less torch.
WITHOUT_TORCH = """
import importlib.machinery, runpy, sys

class PathFinderWithoutTorch(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [
    PathFinderWithoutTorch if finder is importlib.machinery.PathFinder else finder
    for finder in sys.meta_path
]
try:
    import torch
except ModuleNotFoundError:
    pass
else:
    sys.exit("torch was found")
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        (
            "qwen3_core.cli",
            ["demo", "--tiny"],
            'error: --tiny needs torch, which is not installed: run pip install -e ".[testing]" '
            "in a clone of qwen3-rag",
        ),
        (
            "qwen3_core.cli",
            ["demo", "--embedding-model", "{embedding}", "--reranker-model", "{reranker}"],
            "error: --backend transformers (the default) runs the models here and needs torch, "
            'which is not installed: run pip install -e ".[torch]" in a clone of qwen3-rag',
        ),
        (
            "qwen3_core.testing",
            [],
            "error: building the test models needs torch, which is not installed: run pip "
            'install -e ".[testing]" in a clone of qwen3-rag',
        ),
    ],
)
def test_without_torch_the_error_says_what_to_install(
    test_models: ModelPaths, module: str, args: list[str], expected: str
) -> None:
    folders = {"embedding": test_models.embedding, "reranker": test_models.reranker}
    argv = [arg.format(**folders) for arg in args]
    result = _command([module, *argv], python=["-c", WITHOUT_TORCH])
    assert result.returncode == 2, result.stderr
    assert result.stderr == expected + "\n" and result.stdout == ""


def test_test_model_builder_lists_every_shape_without_torch() -> None:
    result = _command(["qwen3_core.testing", "--help"], python=["-c", WITHOUT_TORCH])
    assert result.returncode == 0, result.stderr
    listed = re.search(r"--shape \{([^}]*)\}", result.stdout)
    assert listed is not None and listed.group(1).split(",") == list(SHAPES)
    # docs/testing.md's usage line names the same shapes.
    usage = re.search(r"--shape ([\w.|-]+)\]", (REPO / "docs" / "testing.md").read_text())
    assert usage is not None and usage.group(1).split("|") == list(SHAPES)


def test_chunked_demo_shows_the_long_documents_best_passage(
    test_models: ModelPaths, reranker: Qwen3Reranker, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's chunking demo, as written there, shows a passage cut from the sample's
    long document: the window the engine scores best, not its beginning."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = re.search(r"`qwen3-rag (demo --tiny --long-documents chunk[^`]*)`", readme)
    assert command is not None
    args = shlex.split(command.group(1))
    budget = int(args[args.index("--max-document-tokens") + 1])
    tokenizer = Tokenizer.from_file(str(test_models.reranker / "tokenizer.json"))

    def tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    # Only the long document has more than one window.
    assert tokens(LONG_SAMPLE_DOCUMENT) > 2 * budget
    assert max(map(tokens, SAMPLE_DOCUMENTS)) <= budget
    assert main(args) == 0
    out = capsys.readouterr().out
    long_label = str(len(sample_corpus().documents))  # the last of the sample
    shown = [row for row in _result_fields(out) if row[1] == long_label]
    assert shown, "the long document is in no query's results"
    for query, row in zip(_queries_of(out, long_label), shown, strict=True):
        (hit,) = reranker.rerank(
            query, [LONG_SAMPLE_DOCUMENT], max_document_tokens=budget, long_documents="chunk"
        )
        assert hit.span[0] > 0 and row[6].startswith("...")
        passage = " ".join(LONG_SAMPLE_DOCUMENT[slice(*hit.span)].split())
        assert passage.startswith(row[6].removeprefix("...").removesuffix("..."))
        assert float(row[3]) == pytest.approx(hit.logit, abs=1e-3)


def _queries_of(out: str, label: str) -> list[str]:
    """The query of each results row naming document ``label``, in order."""
    queries, query = [], ""
    for line in out.splitlines():
        if line.startswith("Query: "):
            query = line.removeprefix("Query: ")
        fields = line.split(maxsplit=6)
        if len(fields) == 7 and fields[0].isdigit() and fields[1] == label:
            queries.append(query)
    return queries
