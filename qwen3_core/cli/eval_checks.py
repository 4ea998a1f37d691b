"""Internal: everything ``qwen3-rag eval`` can check before the engine is imported: the numbers, the
names, the files it will write, the libraries it needs, and the dataset's three files. Each
problem is a ``UsageError`` (a ``DatasetError`` for the dataset) with one line."""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from qwen3_core import defaults
from qwen3_core.backend_options import (
    BackendOptions,
    ServerOptions,
    without_progress_bars,
)
from qwen3_core.cli.checks import backend_options, check_model_arguments
from qwen3_core.demo.images import VL_EMBEDDING_MODEL, VL_RERANKER_MODEL
from qwen3_core.errors import UsageError
from qwen3_core.evaluation.beir import BeirDataset, load_beir
from qwen3_core.evaluation.cache import check_cache_folder, default_cache_folder
from qwen3_core.evaluation.defaults import FAISS_FROM_DOCUMENTS, SearchIndex
from qwen3_core.extras import install_command
from qwen3_core.validation import check_text

if TYPE_CHECKING:
    from qwen3_core.checkpoints import Checkpoint

EVAL_EXTRA = install_command("eval")


@dataclass(frozen=True)
class EvalRequest:
    """A checked ``qwen3-rag eval`` command line."""

    dataset: BeirDataset
    candidates: list[int]
    tiny: bool
    embedding_model: str
    reranker_model: str
    instruction: str
    dimensions: int | None
    max_length: int
    backend: BackendOptions
    cache: bool
    cache_dir: Path | None
    index: SearchIndex
    output: Path | None
    plot: Path | None


def check_eval_arguments(args: argparse.Namespace) -> EvalRequest:
    """The request ``args`` make, or a ``UsageError`` (a ``DatasetError`` for the dataset)."""
    candidates: list[int] = args.candidates
    for count in candidates:
        if count < 1:
            raise UsageError(f"--candidates must be at least 1, got {count}")
    repeated = sorted({count for count in candidates if candidates.count(count) > 1})
    if repeated:
        raise UsageError(f"--candidates repeats {', '.join(map(str, repeated))}")
    if args.dimensions is not None and args.dimensions < 1:
        raise UsageError(f"--dimensions must be at least 1, got {args.dimensions}")
    if args.max_length < defaults.MIN_MAX_LENGTH["embedding"]:
        raise UsageError(
            f"--max-length must be at least {defaults.MIN_MAX_LENGTH['embedding']}, "
            f"got {args.max_length}"
        )
    check_model_arguments(args)
    if args.no_cache and args.cache_dir is not None:
        raise UsageError("--cache-dir cannot be combined with --no-cache")
    cache_dir = _cache_folder(args.cache_dir, args.no_cache)
    try:
        instruction = check_text("--instruction", args.instruction)
    except ValueError as exc:  # bytes that are not UTF-8 reach Python as lone surrogates
        raise UsageError(str(exc)) from exc
    if not instruction.strip():
        raise UsageError("--instruction is empty")
    output = _file_to_write("--output", args.output)
    plot = _file_to_write("--plot", args.plot)
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG file: give a name ending in .png, got '{plot}'")
    if output is not None and output == plot:
        raise UsageError("--output and --plot name the same file")
    _require("ir_measures", "the metrics need ir-measures")
    if plot is not None:
        _require("matplotlib", "--plot needs matplotlib")
    # The evaluation's own bars stand for the backend's.
    backend = without_progress_bars(backend_options(args))
    if args.dataset is None and not (args.corpus and args.queries and args.qrels):
        raise UsageError(
            "give DATASET (a BEIR-format folder), or all three of --corpus, --queries and --qrels"
        )
    dataset = load_beir(
        args.dataset,
        args.split,
        corpus_file=args.corpus,
        queries_file=args.queries,
        qrels_file=args.qrels,
    )
    large = len(dataset.documents) >= FAISS_FROM_DOCUMENTS
    if args.index == "faiss" or (args.index == "auto" and large):
        _require("faiss", f"searching {len(dataset.documents):,} documents needs faiss")
    return EvalRequest(
        dataset=dataset,
        candidates=candidates,
        tiny=bool(args.tiny),
        # A corpus with images needs the Qwen3-VL models (qwen3_core.cli.eval_models).
        embedding_model=args.embedding_model
        or (VL_EMBEDDING_MODEL if dataset.images else defaults.DEFAULT_EMBEDDING_MODEL),
        reranker_model=args.reranker_model
        or (VL_RERANKER_MODEL if dataset.images else defaults.DEFAULT_RERANKER_MODEL),
        instruction=instruction,
        dimensions=args.dimensions,
        max_length=args.max_length,
        backend=backend,
        cache=not args.no_cache,
        cache_dir=cache_dir,
        index=cast(SearchIndex, args.index),  # one of the parser's choices
        output=output,
        plot=plot,
    )


def check_eval_models(request: EvalRequest) -> tuple[Checkpoint, Checkpoint]:
    """Both models' checkpoints, opened without their weights (the config and the tokenizer:
    no torch), with ``--dimensions`` and ``--max-length`` checked against them: a wrong
    model or setting is found before either model is loaded, not after the first one.

    Returns:
        The embedding model's and the reranker's checkpoints: kept while the engines load,
        they share the tokenizers read here.

    Raises:
        UsageError: ``--dimensions`` or ``--max-length`` does not fit a model.
        ModelKindError: A model is not of its kind (an embedding model as the reranker ...).
        ModelNotFoundError: A model is neither a folder nor a hub id that can be fetched.
    """
    from qwen3_core import prompts
    from qwen3_core.checkpoints import open_checkpoint
    from qwen3_core.tokenization import EmbeddingTokenizer, RerankTokenizer

    embedding_model, reranker_model = request.embedding_model, request.reranker_model
    if request.tiny:
        from qwen3_core.testing import build_test_models

        models = build_test_models(shape="tiny")  # what load_engines loads
        embedding_model, reranker_model = str(models.embedding), str(models.reranker)
    # A local folder's weights are checked too (their names and shapes, from the files'
    # headers); a hub id's are not fetched before both models are known to exist. Servers
    # hold the weights themselves.
    local = not isinstance(request.backend, ServerOptions)
    embedding = open_checkpoint(
        embedding_model, "embedding", weights=local and Path(embedding_model).expanduser().is_dir()
    )
    reranker = open_checkpoint(
        reranker_model, "reranker", weights=local and Path(reranker_model).expanduser().is_dir()
    )
    hidden = int(embedding.config["hidden_size"])
    if request.dimensions is not None and request.dimensions > hidden:
        raise UsageError(
            f"--dimensions {request.dimensions} is more than the embedding model's {hidden} "
            "dimensions"
        )
    for name, checkpoint in (("embedding model", embedding), ("reranker", reranker)):
        positions = checkpoint.config.get("max_position_embeddings")
        if isinstance(positions, int) and request.max_length > positions:
            raise UsageError(
                f"--max-length {request.max_length} is more than the {name}'s {positions} positions"
            )
    _, query_prompt = prompts.query_prompt_for(request.instruction, embedding.variant.query_prompt)
    try:
        EmbeddingTokenizer(embedding.tokenizer, request.max_length).check_prompt_room(query_prompt)
        RerankTokenizer(reranker.tokenizer, request.max_length)
    except ValueError as exc:  # the prompts leave no room for any text
        raise UsageError(str(exc)) from exc
    return embedding, reranker


def _cache_folder(value: str | None, no_cache: bool) -> Path | None:
    """--cache-dir (None: the default folder), once it is known to be a folder or to be one
    that can be made (found now, not after the corpus is embedded)."""
    if no_cache:
        return None
    if value is not None and not value.strip():
        raise UsageError("--cache-dir is empty")
    folder = Path(value).expanduser() if value is not None else default_cache_folder()
    try:
        check_cache_folder(folder, "--cache-dir" if value is not None else "the cache folder")
    except ValueError as exc:
        raise UsageError(f"{exc}: give another with --cache-dir, or --no-cache") from exc
    return folder if value is not None else None


def _file_to_write(name: str, value: str | None) -> Path | None:
    """A file the command will write: its folder must exist, and it must not be a folder
    (found now, not after the corpus is embedded)."""
    if value is None:
        return None
    if not value.strip():
        raise UsageError(f"{name} is empty")
    path = Path(value).expanduser()
    if path.is_dir():
        raise UsageError(f"{name} '{path}' is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{name} '{path}': the folder '{path.parent}' does not exist")
    return path


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"{what}: {EVAL_EXTRA}")
