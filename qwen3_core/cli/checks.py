"""Internal: everything ``qwen3-rag demo`` can check before the engine is imported: the numbers, the
names, the queries and the corpus file. Each problem is a ``UsageError`` with one line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from qwen3_core import defaults
from qwen3_core.backend_options import (
    BackendOptions,
    OpenVINOOptions,
    ServerOptions,
    TransformersOptions,
    VllmOptions,
)
from qwen3_core.demo.corpus import SAMPLE_QUERIES, Corpus, read_corpus, sample_corpus
from qwen3_core.document_windows import DocumentBudget
from qwen3_core.errors import UsageError
from qwen3_core.validation import check_text


@dataclass(frozen=True)
class DemoRequest:
    """A checked ``qwen3-rag demo`` command line."""

    corpus: Corpus
    queries: list[str]
    interactive: bool
    top_k: int
    top_n: int
    tiny: bool
    embedding_model: str
    reranker_model: str
    instruction: str
    backend: BackendOptions
    """Where the models run, with the settings given (checked; no torch needed to check)."""
    budget: DocumentBudget
    """How the reranker reads long documents."""


def check_demo_arguments(args: argparse.Namespace, *, stdin_is_terminal: bool) -> DemoRequest:
    """The request ``args`` make, or a ``UsageError`` (a ``CorpusError`` for the corpus file)."""
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if args.top_n < 1:
        raise UsageError(f"--top-n must be at least 1, got {args.top_n}")
    if args.top_n > args.top_k:
        raise UsageError(
            f"--top-n ({args.top_n}) cannot be more than --top-k ({args.top_k}): the reranker "
            "orders the top-k candidates of the embedding search"
        )
    check_model_arguments(args)
    backend = backend_options(args)
    if args.max_document_tokens is not None and args.max_document_tokens < 1:
        raise UsageError(
            f"--max-document-tokens must be at least 1, got {args.max_document_tokens}"
        )
    budget = DocumentBudget(args.max_document_tokens, args.long_documents)
    instruction = _check_unicode("--instruction", args.instruction)
    queries = [_check_string("--query", query) for query in args.query or []]
    corpus = read_corpus(args.corpus) if args.corpus else sample_corpus()
    if not args.corpus and not queries:
        queries = list(SAMPLE_QUERIES)
    interactive = bool(args.interactive)
    if not queries and not interactive:
        # Your own corpus and no query: nothing would be searched.
        if not stdin_is_terminal:
            raise UsageError(
                "--corpus was given without a query: pass --query TEXT (repeatable) or "
                "--interactive"
            )
        interactive = True
    return DemoRequest(
        corpus=corpus,
        queries=queries,
        interactive=interactive,
        top_k=args.top_k,
        top_n=args.top_n,
        tiny=bool(args.tiny),
        embedding_model=args.embedding_model or defaults.DEFAULT_EMBEDDING_MODEL,
        reranker_model=args.reranker_model or defaults.DEFAULT_RERANKER_MODEL,
        instruction=instruction,
        backend=backend,
        budget=budget,
    )


def check_model_arguments(args: argparse.Namespace) -> None:
    """``--tiny`` or model names, and no empty name: shared by every command that loads the
    two models."""
    if args.tiny and (args.embedding_model or args.reranker_model):
        raise UsageError("--tiny cannot be combined with --embedding-model or --reranker-model")
    for name in ("--embedding-model", "--reranker-model"):
        value = getattr(args, name[2:].replace("-", "_"))
        if value is not None and not value.strip():
            raise UsageError(f"{name} is empty")


def check_query(query: str) -> str:
    """A query typed or passed: non-empty, valid Unicode."""
    return _check_string("the query", query)


def _check_string(name: str, value: str) -> str:
    if not value.strip():
        raise UsageError(f"{name} is empty")
    return _check_unicode(name, value)


def _check_unicode(name: str, value: str) -> str:
    try:
        return check_text(name, value)
    except ValueError as exc:  # bytes that are not UTF-8 reach Python as lone surrogates
        raise UsageError(str(exc)) from exc


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The backend's options from --backend, --device, --dtype, --quantization and
    --base-url."""
    # "auto" is what leaving --dtype out means: the engine chooses for the device.
    dtype = None if args.dtype is not None and args.dtype.lower() == "auto" else args.dtype
    given = {
        "--device": args.device,
        "--dtype": dtype,
        "--quantization": args.quantization,
        "--base-url": args.base_url,
    }
    for name, value in given.items():
        if value is not None and args.backend not in _TAKEN_BY[name]:
            takers = " or ".join(f"--backend {backend}" for backend in _TAKEN_BY[name])
            raise UsageError(
                f"{name} is not a setting of --backend {args.backend} (only of {takers})"
            )
    if args.backend == "server" and not args.base_url:
        raise UsageError("--backend server needs the servers' address: --base-url URL")
    try:
        if args.backend == "server":
            return ServerOptions(base_url=args.base_url)
        if args.backend == "vllm":
            return VllmOptions(dtype=dtype)
        if args.backend == "openvino":
            return OpenVINOOptions()
        if args.quantization is None:
            return TransformersOptions(device=args.device, dtype=dtype)
        return _int8_options(args.device, dtype)
    except (ValueError, TypeError) as exc:  # a misspelt device or dtype, a bad address
        raise UsageError(str(exc)) from exc


# Which backends take each setting.
_TAKEN_BY = {
    "--device": ("transformers",),
    "--dtype": ("transformers", "vllm"),
    "--quantization": ("transformers",),
    "--base-url": ("server",),
}


def _int8_options(device: str | None, dtype: str | None) -> TransformersOptions:
    """--quantization int8: int8 runs on CPU from float32 weights only, so those are implied
    when left out and refused when contradicted (before the engine is imported)."""
    options = TransformersOptions(device=device or "cpu", dtype=dtype, quantization="int8")
    if not str(options.device).startswith("cpu"):
        raise UsageError(
            f"--quantization int8 runs on CPU only, not on {options.device}: leave --device "
            "out or pass --device cpu"
        )
    if options.dtype not in (None, "float32"):
        raise UsageError(
            f"--quantization int8 works from float32 weights, not {options.dtype}: leave "
            "--dtype out or pass --dtype float32"
        )
    return options
