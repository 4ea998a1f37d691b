"""``qwen3-rag``: the command line. ``qwen3-rag demo`` runs the two-stage search."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from qwen3_core import prompts
from qwen3_core.backends import BACKENDS
from qwen3_core.demo.corpus import SAMPLE_DOCUMENTS, SAMPLE_QUERIES, CorpusError, load_corpus_file
from qwen3_core.demo.search import SearchOutcome, TwoStageSearch
from qwen3_core.loading import ModelKindError, ModelNotFoundError

QUIT_WORDS = {"quit", "exit", "q", "退出"}


def tiny_models_folder() -> Path:
    """Where ``--tiny`` builds and keeps the offline test models."""
    if "QWEN3_RAG_TEST_MODELS" in os.environ:
        return Path(os.environ["QWEN3_RAG_TEST_MODELS"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "qwen3-rag" / "test-models"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen3-rag", description="Two-stage retrieval with Qwen3-Embedding and Qwen3-Reranker."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="two-stage search over a corpus: embedding top-k, then reranking",
        description="Embed a corpus, take the top-k documents by cosine similarity to each "
        "query, rerank them and print the best. Without --corpus it searches the built-in "
        "18-document sample corpus with its two queries.",
    )
    demo.add_argument(
        "--embedding-model",
        default=prompts.DEFAULT_EMBEDDING_MODEL,
        help="hub id or local folder (default: %(default)s)",
    )
    demo.add_argument(
        "--reranker-model",
        default=prompts.DEFAULT_RERANKER_MODEL,
        help="hub id or local folder (default: %(default)s)",
    )
    demo.add_argument(
        "--tiny",
        action="store_true",
        help="use tiny random offline models (no download; the ranking is random)",
    )
    demo.add_argument(
        "--corpus",
        metavar="FILE",
        help='your documents: one per line, or JSONL with a "text" field',
    )
    demo.add_argument(
        "--query",
        action="append",
        metavar="TEXT",
        help="a query to run (repeatable; default: the sample queries with the sample corpus; "
        "with --corpus and no query, ask for queries on a terminal)",
    )
    demo.add_argument("--interactive", action="store_true", help="then ask for queries")
    demo.add_argument("--top-k", type=int, default=8, help="embedding candidates (default 8)")
    demo.add_argument("--top-n", type=int, default=3, help="results after reranking (default 3)")
    demo.add_argument(
        "--instruction",
        default=prompts.DEFAULT_INSTRUCTION,
        help="task instruction for queries and reranking",
    )
    demo.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="where the models run (default: %(default)s)",
    )
    demo.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    demo.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: auto)")
    return parser


def _shorten(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_outcome(query: str, outcome: SearchOutcome, corpus_size: int) -> None:
    print(f"\nQuery: {query}")
    print(
        f"  stage 1  embedding search, top {outcome.candidates} of {corpus_size} "
        f"documents: {outcome.embedding_seconds:.3f} s"
    )
    print(f"  stage 2  reranking {outcome.candidates} candidates: {outcome.rerank_seconds:.3f} s")
    print(f"  {'rank':>4}  {'doc id':>6}  {'embedding':>9}  {'rerank':>7}  {'was':>3}  document")
    for rank, hit in enumerate(outcome.hits, 1):
        print(
            f"  {rank:>4}  {hit.document_id:>6}  {hit.embedding_score:>9.4f}  "
            f"{hit.rerank_score:>7.4f}  {hit.original_rank:>3}  {_shorten(hit.document)}"
        )


def interactive_loop(search: TwoStageSearch, args: argparse.Namespace) -> None:
    print("\nInteractive search: type a query, or quit / exit / q (Ctrl-D or Ctrl-C also end it).")
    while True:
        try:
            query = input("query> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if query.lower() in QUIT_WORDS:
            return
        if query:
            print_outcome(
                query, search.search(query, args.top_k, args.top_n), len(search.documents)
            )


def _load_models(args: argparse.Namespace) -> TwoStageSearch:
    from qwen3_core import Qwen3Embedder, Qwen3Reranker

    embedding_model, reranker_model = args.embedding_model, args.reranker_model
    if args.tiny:
        from qwen3_core.testing import build_test_models

        print("Using tiny RANDOM offline models: the pipeline is real, the ranking is random.")
        models = build_test_models(tiny_models_folder(), "tiny")
        embedding_model, reranker_model = models.embedding, models.reranker
    options = {
        "device": args.device,
        "dtype": args.dtype,
        "backend": args.backend,
        "instruction": args.instruction,
    }
    print(f"Loading the embedding model {embedding_model} ...")
    embedder = Qwen3Embedder(embedding_model, **options)
    print(f"Loading the reranker {reranker_model} ...")
    reranker = Qwen3Reranker(reranker_model, **options)
    return TwoStageSearch(embedder, reranker)


def run_demo(args: argparse.Namespace) -> int:
    if args.top_k < 1 or args.top_n < 1:
        raise ValueError("--top-k and --top-n must be at least 1")
    documents = load_corpus_file(args.corpus) if args.corpus else list(SAMPLE_DOCUMENTS)
    queries = args.query or ([] if args.corpus else list(SAMPLE_QUERIES))
    if not queries and not args.interactive:
        # Your own corpus and no query: nothing would be searched.
        if not sys.stdin.isatty():
            raise ValueError(
                "--corpus was given without a query: pass --query TEXT (repeatable) or "
                "--interactive"
            )
        args.interactive = True
    search = _load_models(args)
    seconds = search.index(documents)
    print(
        f"Embedded {len(documents)} documents in {seconds:.2f} s "
        f"(vectors of {search.embedder.dimension} dimensions)."
    )
    for query in queries:
        print_outcome(query, search.search(query, args.top_k, args.top_n), len(documents))
    if args.interactive:
        interactive_loop(search, args)
    return 0


def _quiet_libraries() -> None:
    """Model-loading progress bars and notices would bury the demo's own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _one_line(exc: BaseException) -> str:
    """The first line of an error's message (some libraries' messages run over many)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return run_demo(args)
    except ModelNotFoundError as exc:
        print(
            f"error: {_one_line(exc)}. Run with --tiny to try the offline test models, or pass a "
            "local folder with --embedding-model / --reranker-model.",
            file=sys.stderr,
        )
    except (ImportError, CorpusError, ModelKindError, ValueError, TypeError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a command line prints one line, never a traceback
        print(f"error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
