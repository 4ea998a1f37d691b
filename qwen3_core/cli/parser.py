"""Internal: the ``qwen3-rag`` arguments. Nothing here imports the engine: parsing must stay
instant."""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any, get_args

from qwen3_core import defaults, prompts
from qwen3_core.backend_options import BACKENDS, Quantization
from qwen3_core.cli.serve_command import add_serve_command
from qwen3_core.demo.corpus import sample_corpus
from qwen3_core.document_windows import LONG_DOCUMENTS
from qwen3_core.evaluation.defaults import DEFAULT_CANDIDATES, FAISS_FROM_DOCUMENTS


class _VersionAction(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        try:
            version = importlib.metadata.version("qwen3-rag")
        except importlib.metadata.PackageNotFoundError:  # run from a folder, not installed
            version = "(not installed as a package)"
        print(f"{parser.prog} {version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen3-rag", description="Two-stage retrieval with Qwen3-Embedding and Qwen3-Reranker."
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version of qwen3-rag and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="two-stage search over a corpus: embedding top-k, then reranking",
        description="Embed a corpus, take the top-k documents by cosine similarity to each "
        "query, rerank them and print the best. Without --corpus it searches the built-in "
        f"{len(sample_corpus().documents)}-document sample corpus with its two queries.",
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
        help='your documents: one per line, or JSONL with a "text" field, an optional "id" '
        '(or "_id") and an optional "title", put before the text as BEIR does (a BEIR '
        "corpus.jsonl works as it is); results name documents by their id, else by line or "
        "record number",
    )
    demo.add_argument(
        "--images",
        metavar="DIR",
        help="search a folder of images (.png, .jpg, .webp, ...) and text files (.txt, .md) "
        "instead, with the Qwen3-VL models (default: Qwen/Qwen3-VL-Embedding-2B and "
        "Qwen/Qwen3-VL-Reranker-2B); needs --query",
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
        "--long-documents",
        choices=LONG_DOCUMENTS,
        default="truncate",
        help="a document over the reranker's budget: truncate scores its first tokens; chunk "
        "scores it in overlapping windows, ranks it by the best one and shows that passage "
        "(default truncate)",
    )
    demo.add_argument(
        "--max-document-tokens",
        type=int,
        metavar="N",
        help="the reranker's budget: most tokens of a document in one prompt (default: what "
        "the prompt's length limit leaves)",
    )
    add_backend_arguments(demo)
    _add_eval_command(commands)
    add_serve_command(commands)
    return parser


def _add_eval_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "eval",
        help="measure two-stage retrieval on your own BEIR-format data",
        description="Embed a BEIR-format corpus (the vectors are cached for the next run), "
        "then report nDCG@10, Recall@10, Recall@100 and MRR@10 of the embedding search alone "
        "and of the embedding search followed by reranking, for each candidate count, with "
        "the time each stage took.",
    )
    command.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        help="a BEIR-format folder: corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv (may be "
        "left out when --corpus, --queries and --qrels are all given)",
    )
    command.add_argument(
        "--split", default="test", help="the qrels file to use, qrels/SPLIT.tsv (default: test)"
    )
    command.add_argument("--corpus", metavar="FILE", help="the corpus file, instead of DATASET's")
    command.add_argument("--queries", metavar="FILE", help="the queries file, instead of DATASET's")
    command.add_argument("--qrels", metavar="FILE", help="the qrels file, instead of DATASET's")
    command.add_argument(
        "--candidates",
        type=int,
        nargs="+",
        default=list(DEFAULT_CANDIDATES),
        metavar="N",
        help="embedding candidates to rerank per query, one row each (default: "
        + " ".join(map(str, DEFAULT_CANDIDATES))
        + ")",
    )
    command.add_argument(
        "--embedding-model",
        help=f"hub id or local folder (default: {defaults.DEFAULT_EMBEDDING_MODEL})",
    )
    command.add_argument(
        "--reranker-model",
        help=f"hub id or local folder (default: {defaults.DEFAULT_RERANKER_MODEL})",
    )
    command.add_argument(
        "--tiny",
        action="store_true",
        help="use tiny random offline models (no download; the metrics are those of a random "
        "ranking)",
    )
    command.add_argument(
        "--instruction",
        default=prompts.DEFAULT_INSTRUCTION,
        help="task instruction for queries and reranking (default: %(default)r)",
    )
    command.add_argument(
        "--dimensions",
        type=int,
        metavar="N",
        help="keep the first N dimensions of the embeddings (default: all)",
    )
    command.add_argument(
        "--max-length",
        type=int,
        default=defaults.MAX_LENGTH,
        metavar="TOKENS",
        help="longest input in tokens; longer texts are cut (default: %(default)s)",
    )
    command.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where corpus vectors are kept between runs (default: qwen3-rag/corpus-vectors "
        "in the user cache folder)",
    )
    command.add_argument(
        "--no-cache", action="store_true", help="embed the corpus again and keep nothing"
    )
    command.add_argument(
        "--index",
        choices=("auto", "numpy", "faiss"),
        default="auto",
        help="how the embedding search runs: exact either way (default: auto, faiss from "
        f"{FAISS_FROM_DOCUMENTS:,} documents on)",
    )
    command.add_argument("--output", metavar="FILE", help="also write the results as JSON")
    command.add_argument(
        "--plot", metavar="FILE", help="draw nDCG@10 and the time per query into a PNG file"
    )
    add_backend_arguments(command)


def add_backend_arguments(command: argparse.ArgumentParser) -> None:
    """--backend, --device, --dtype, --quantization and --base-url: where and how the
    models run."""
    command.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="where the models run (default: %(default)s)",
    )
    command.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto; transformers)"
    )
    command.add_argument(
        "--dtype",
        default=None,
        help="float32, bfloat16, float16 or auto (default: auto; transformers and vllm)",
    )
    command.add_argument(
        "--quantization",
        choices=get_args(Quantization),
        help="int8: the decoder's linear layers in int8, faster on CPU and not exact "
        "(transformers on CPU only: --device cpu is implied; default: none, exact)",
    )
    command.add_argument(
        "--base-url",
        action="append",
        metavar="URL",
        help="a vLLM model server's address, for --backend server (repeatable: used in turn)",
    )
