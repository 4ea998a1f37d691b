"""Internal: ``qwen3-rag``'s entry point: check the command line, then run it; a failure is one
line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qwen3_core.cli.checks import DemoRequest, check_demo_arguments, check_query
from qwen3_core.cli.eval_checks import check_eval_arguments
from qwen3_core.cli.eval_command import run_eval
from qwen3_core.cli.output import print_legend, print_outcome
from qwen3_core.cli.parser import build_parser
from qwen3_core.cli.serve_command import run_serve
from qwen3_core.errors import CorpusError, DatasetError, UsageError

if TYPE_CHECKING:
    from qwen3_core.demo.search import TwoStageSearch

QUIT_WORDS = {"quit", "exit", "q", "退出"}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return run_serve(args)
        if args.command == "eval":
            # Only once the arguments and the dataset's files are known to be usable is the
            # engine loaded.
            return run_eval(check_eval_arguments(args))
        if args.images is not None:
            from qwen3_core.demo.images import run_image_demo

            return run_image_demo(args)
        request = check_demo_arguments(args, stdin_is_terminal=_stdin_is_terminal())
        # Only now, with the arguments and the corpus known to be usable, is the engine loaded.
        return run_demo(request)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a command line prints one line, never a traceback
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 2


def run_demo(request: DemoRequest) -> int:
    from qwen3_core.cli.models import load_models

    search = load_models(request)
    seconds = search.index(request.corpus.documents)
    print(
        f"Embedded {len(request.corpus.documents)} documents in {seconds:.2f} s "
        f"(vectors of {search.embedder.dimension} dimensions)."
    )
    print_legend(request.corpus, chunked=request.budget.chunked)
    for query in request.queries:
        print_outcome(query, search.search(query, request.top_k, request.top_n), request.corpus)
    if request.interactive:
        interactive_loop(search, request)
    return 0


def interactive_loop(search: TwoStageSearch, request: DemoRequest) -> None:
    """Reads queries until quit or the end of input. The results go to stdout; the banner and
    the prompt go to stderr, and only on a terminal: piped queries get results alone."""
    prompting = _stdin_is_terminal()
    sys.stdout.flush()  # the results so far come before the first prompt
    if prompting:
        print(
            "\nInteractive search: type a query, or quit / exit / q (Ctrl-D or Ctrl-C also end "
            "it).",
            file=sys.stderr,
        )
    while True:
        try:
            if prompting:
                print("query> ", end="", file=sys.stderr, flush=True)
            query = input().strip()
        except (EOFError, KeyboardInterrupt):
            if prompting:  # end the prompt's line
                print(file=sys.stderr)
            return
        if query.lower() in QUIT_WORDS:
            return
        if not query:
            continue
        try:
            check_query(query)
        except UsageError as exc:  # one bad line typed: say so, and ask again
            print(f"error: {exc}", file=sys.stderr)
            continue
        outcome = search.search(query, request.top_k, request.top_n)
        print_outcome(query, outcome, request.corpus)
        sys.stdout.flush()  # each query's results as they come, in a pipe too


def describe_failure(exc: Exception) -> str:
    """The error line's text (after "error: ")."""
    if isinstance(exc, (UsageError, CorpusError, DatasetError)):
        return _one_line(exc)
    # The engine is imported by now: its errors can be recognised.
    from qwen3_core.errors import ModelKindError, ModelNotFoundError

    if isinstance(exc, ModelNotFoundError):
        return (
            f"{_one_line(exc)}. Run with --tiny to try the offline test models, or pass a local "
            "folder with --embedding-model / --reranker-model."
        )
    if isinstance(exc, ModelKindError) and exc.holds is not None:
        # The library names the Python class to use; here it is the other option.
        other = "a reranker" if exc.holds == "reranker" else "an embedding model"
        return f"{exc.reason}: pass {other} with --{exc.holds}-model"
    if isinstance(exc, (ImportError, ModelKindError, ValueError, TypeError)):
        return _one_line(exc)
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    """The first line of an error's message (some libraries' messages run over many)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()
