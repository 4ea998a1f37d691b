"""Internal: ``qwen3-rag demo --images DIR``: a folder of images and text files searched in two
stages with the Qwen3-VL models (``Qwen3VLEmbedder`` top-k, then ``Qwen3VLReranker``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qwen3_core import prompts
from qwen3_core.backend_options import TransformersOptions
from qwen3_core.cli.checks import backend_options, check_model_arguments, check_query
from qwen3_core.demo.corpus import Corpus
from qwen3_core.errors import CorpusError, UsageError

if TYPE_CHECKING:  # the engines import torch
    from qwen3_core.demo.search import SearchOutcome
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import Qwen3VLReranker

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
"""Files searched as images."""
TEXT_SUFFIXES = frozenset({".txt", ".md"})
"""Files searched as texts (UTF-8)."""

VL_EMBEDDING_MODEL = "Qwen/Qwen3-VL-Embedding-2B"
"""The embedding model of ``--images`` (and of ``qwen3-rag eval`` on a corpus with images)
when none is named."""
VL_RERANKER_MODEL = "Qwen/Qwen3-VL-Reranker-2B"
"""The reranker of ``--images`` (and of ``qwen3-rag eval`` on a corpus with images) when none
is named."""


@dataclass(frozen=True)
class ImageFolder:
    """A folder's searchable files: what the engines get, and what the results show."""

    inputs: list[Path | str]
    """Per file: its path (an image) or its text (a text file)."""
    corpus: Corpus
    """Per file: what the results show (the text, or the image's size) and its path in the
    folder."""
    skipped: int
    """Files of other kinds, left out."""


def read_image_folder(folder: str | Path) -> ImageFolder:
    """The images (``IMAGE_SUFFIXES``) and text files (``TEXT_SUFFIXES``) under ``folder``
    and its subfolders, in path order; hidden files and folders are left out.

    Raises:
        CorpusError: The folder does not exist, holds no such file, or a text file is not
            UTF-8 text.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CorpusError(f"--images '{root}' {what}")
    inputs: list[Path | str] = []
    shown: list[str] = []
    labels: list[str] = []
    skipped = 0
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            inputs.append(path)
            shown.append(_image_summary(path))
        elif suffix in TEXT_SUFFIXES:
            text = _read_text(path)
            if not text.strip():
                skipped += 1
                continue
            inputs.append(text)
            shown.append(text)
        else:
            skipped += 1
            continue
        labels.append(relative.as_posix())
    if not inputs:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES | TEXT_SUFFIXES))
        raise CorpusError(f"--images '{root}' holds no image or text file ({kinds})")
    return ImageFolder(inputs, Corpus(shown, labels, f"the file's path in {root}"), skipped)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"'{path}' cannot be read ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"'{path}' is not UTF-8 text ({exc.reason})") from exc


def _image_summary(path: Path) -> str:
    """What a result row shows of an image: its size, read from the file's header (a file
    that cannot be read is reported, naming it, when the embedder opens it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return f"[image {image.width} x {image.height}]"
    except (OSError, UnidentifiedImageError, ValueError):
        return "[image]"


class MultimodalSearch:
    """Embeds a folder's files once; each search embeds the text query, takes the ``top_k``
    files by cosine similarity and reranks them to the best ``top_n``."""

    def __init__(
        self,
        embedder: Qwen3VLEmbedder,
        reranker: Qwen3VLReranker,
    ) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.inputs: list[Path | str] = []
        self.shown: list[str] = []
        self._vectors = np.zeros((0, embedder.dimension), dtype=np.float32)

    def index(self, inputs: Sequence[Path | str], shown: Sequence[str]) -> float:
        """Embed the files (``shown``: what each result row shows); returns the seconds it
        took."""
        start = time.perf_counter()
        self._vectors = self.embedder.embed_documents(list(inputs))
        self.inputs, self.shown = list(inputs), list(shown)
        return time.perf_counter() - start

    def search(self, query: str, top_k: int = 8, top_n: int = 3) -> SearchOutcome:
        from qwen3_core.demo.search import SearchHit, SearchOutcome

        start = time.perf_counter()
        # Unit vectors: the dot product is the cosine similarity.
        similarity = self._vectors @ self.embedder.embed_queries([query])[0]
        candidates = np.argsort(-similarity, kind="stable")[: min(top_k, len(self.inputs))]
        embedding_seconds = time.perf_counter() - start

        start = time.perf_counter()
        ranked = self.reranker.rerank(query, [self.inputs[i] for i in candidates], top_n=top_n)
        rerank_seconds = time.perf_counter() - start
        hits = []
        for r in ranked:
            row = int(candidates[r.index])
            shown = self.shown[row]
            hits.append(
                SearchHit(
                    document_id=row,
                    document=shown,
                    embedding_score=float(similarity[row]),
                    rerank_score=r.score,
                    rerank_logit=r.logit,
                    original_rank=r.index + 1,
                    span=(0, len(shown)),
                )
            )
        return SearchOutcome(hits, len(candidates), embedding_seconds, rerank_seconds)


@dataclass(frozen=True)
class ImageDemoRequest:
    """A checked ``qwen3-rag demo --images`` command line."""

    folder: ImageFolder
    queries: list[str]
    top_k: int
    top_n: int
    tiny: bool
    embedding_model: str
    reranker_model: str
    instruction: str | None
    """None: each model's own default."""
    backend: TransformersOptions


def check_image_demo_arguments(args: argparse.Namespace) -> ImageDemoRequest:
    """The request ``args`` make, or a ``UsageError`` (a ``CorpusError`` for the folder)."""
    if args.corpus is not None:
        raise UsageError("--images and --corpus cannot be combined: search one or the other")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if args.top_n < 1:
        raise UsageError(f"--top-n must be at least 1, got {args.top_n}")
    if args.top_n > args.top_k:
        raise UsageError(
            f"--top-n ({args.top_n}) cannot be more than --top-k ({args.top_k}): the reranker "
            "orders the top-k candidates of the embedding search"
        )
    if args.long_documents != "truncate" or args.max_document_tokens is not None:
        raise UsageError(
            "--long-documents and --max-document-tokens are settings of the text reranker, "
            "not of --images (the Qwen3-VL reranker cuts a text over its length limit)"
        )
    check_model_arguments(args)
    backend = backend_options(args)
    if not isinstance(backend, TransformersOptions) or backend.quantization is not None:
        raise UsageError(
            "--images runs the Qwen3-VL models on --backend transformers (the default), "
            "without --quantization"
        )
    if not args.query:
        raise UsageError("--images needs a query: pass --query TEXT (repeatable)")
    if args.interactive:
        raise UsageError(
            "--images runs the queries given with --query; --interactive is not available with it"
        )
    queries = [check_query(query) for query in args.query]
    instruction = None
    if args.instruction != prompts.DEFAULT_INSTRUCTION:  # left out: the models' own tasks
        instruction = check_query(args.instruction)
    return ImageDemoRequest(
        folder=read_image_folder(args.images),
        queries=queries,
        top_k=args.top_k,
        top_n=args.top_n,
        tiny=bool(args.tiny),
        embedding_model=args.embedding_model or VL_EMBEDDING_MODEL,
        reranker_model=args.reranker_model or VL_RERANKER_MODEL,
        instruction=instruction,
        backend=backend,
    )


def run_image_demo(args: argparse.Namespace) -> int:
    """``qwen3-rag demo --images DIR``: check, load, index, then print each query's results."""
    from qwen3_core.cli.output import print_outcome

    request = check_image_demo_arguments(args)
    folder = request.folder
    from qwen3_core.cli.models import load_vl_engines

    embedder, reranker = load_vl_engines(
        request.embedding_model,
        request.reranker_model,
        tiny=request.tiny,
        backend=request.backend,
        instruction=request.instruction,
    )
    search = MultimodalSearch(embedder, reranker)
    seconds = search.index(folder.inputs, folder.corpus.documents)
    images = sum(isinstance(item, Path) for item in folder.inputs)
    others = f"; {_count(folder.skipped, 'other file')} left out" if folder.skipped else ""
    print(
        f"Embedded {_count(images, 'image')} and {_count(len(folder.inputs) - images, 'text file')}"
        f" in {seconds:.2f} s (vectors of {embedder.dimension} dimensions{others})."
    )
    _print_legend(folder.corpus)
    for query in request.queries:
        print_outcome(query, search.search(query, request.top_k, request.top_n), folder.corpus)
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_legend(corpus: Corpus) -> None:
    print("\nColumns:")
    print("  rank            the order after reranking, best first (by log-odds)")
    print(f"  doc             {corpus.label_meaning}")
    print("  relevance       the reranker's score P(yes), from 0 to 1")
    print("  log-odds        logit(yes) - logit(no): relevance is its sigmoid")
    print("  similarity      the cosine similarity of the query's and the file's embeddings")
    print("  embedding rank  the rank by similarity, before reranking")
    print("  document        a text file's text, or an image's size in pixels")
    sys.stdout.flush()
