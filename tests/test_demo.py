"""``qwen3-rag demo``: seed 003's two-stage search, and its errors as one clear line."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.demo.cli import main
from qwen3_core.demo.corpus import CorpusError, load_corpus_file
from qwen3_core.demo.search import TwoStageSearch
from qwen3_core.testing import ModelPaths


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
    assert "ranking is random" in out and "Embedded 18 documents" in out
    for query in ["中国的首都是哪里？", "什么是重力？"]:
        assert f"Query: {query}" in out
    assert out.count("stage 1  embedding search, top 8 of 18 documents") == 2
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


def test_wrong_model_kind_is_one_clear_line(
    test_models: ModelPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--embedding-model", str(test_models.reranker)]
    assert main(args) == 2
    assert "looks like a Qwen3 reranker" in _error_line(capsys)


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
    assert "Query: 什么是重力？" in result.stdout and "top 4 of 18" in result.stdout


def test_unreadable_corpus_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A corpus path that is a file but fails to read (an I/O error) is one line too."""
    unreadable = Path("/proc/self/mem")  # a regular file whose read fails with EIO
    if not unreadable.is_file():
        pytest.skip("needs Linux's /proc/self/mem")
    assert main(["demo", "--tiny", "--corpus", str(unreadable)]) == 2
    assert "cannot be read" in _error_line(capsys)


# The real command in subprocesses, as a user runs it: one line on stderr, a non-zero exit,
# never a traceback. Started together, since each pays for importing torch.
CLI_FAILURES = {
    "missing-corpus": (["--tiny", "--corpus", "{root}/missing.txt"], "does not exist"),
    "empty-corpus": (["--tiny", "--corpus", "{root}/empty.txt"], "has no documents"),
    "binary-corpus": (["--tiny", "--corpus", "{root}/binary.bin"], "looks binary"),
    "model-not-found": (["--embedding-model", "{root}/no-such-model"], "does not exist"),
    "query-not-utf8": (["--tiny", "--query", "\udcff\udcfe"], "contains a lone surrogate"),
}


@pytest.fixture(scope="module")
def cli_runs(
    test_models: ModelPaths, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("cli")
    (root / "empty.txt").write_bytes(b"\n \n")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 64)
    env = {**os.environ, "QWEN3_RAG_TEST_MODELS": str(test_models.embedding.parents[1])}
    script = Path(sys.executable).with_name("qwen3-rag")
    running = {}
    for index, (name, (args, _)) in enumerate(CLI_FAILURES.items()):
        # The console script, and the module run as a program: both entry points.
        command = [str(script)] if index % 2 else [sys.executable, "-m", "qwen3_core.demo.cli"]
        argv = [a.replace("{root}", str(root)) for a in args]
        running[name] = subprocess.Popen(
            # A query that is not UTF-8 reaches Python as lone surrogates (surrogateescape).
            [os.fsencode(a) for a in [*command, "demo", *argv]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    results = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        results[name] = (process.returncode, out.decode(), err.decode())
    return results


@pytest.mark.parametrize("name", list(CLI_FAILURES))
def test_command_fails_with_one_line(cli_runs: dict[str, tuple[int, str, str]], name: str) -> None:
    returncode, _, err = cli_runs[name]
    assert returncode == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert CLI_FAILURES[name][1] in lines[0]


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
    out = capsys.readouterr().out
    assert "Interactive search" in out and "Query: another" in out
