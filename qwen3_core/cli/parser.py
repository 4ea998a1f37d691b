"""The ``qwen3-rag`` arguments. Nothing here imports the engine: parsing must stay instant."""

from __future__ import annotations

import argparse

from qwen3_core import defaults, prompts
from qwen3_core.backends.options import BACKENDS


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
        help=f"hub id or local folder (default: {defaults.DEFAULT_EMBEDDING_MODEL})",
    )
    demo.add_argument(
        "--reranker-model",
        help=f"hub id or local folder (default: {defaults.DEFAULT_RERANKER_MODEL})",
    )
    demo.add_argument(
        "--tiny",
        action="store_true",
        help="use tiny random offline models (no download; the ranking is random)",
    )
    demo.add_argument(
        "--corpus",
        metavar="FILE",
        help='your documents: one per line, or JSONL with a "text" field and an optional "id" '
        "(results name documents by their id, else by line or record number)",
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
    demo.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto; transformers)"
    )
    demo.add_argument(
        "--dtype",
        default=None,
        help="float32, bfloat16, float16 or auto (default: auto; transformers and vllm)",
    )
    demo.add_argument(
        "--base-url",
        action="append",
        metavar="URL",
        help="a vLLM model server's address, for --backend server (repeatable: used in turn)",
    )
    return parser
