"""Internal: what ``qwen3-rag demo`` prints: the columns' legend and each query's results."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING

from qwen3_core.demo.corpus import Corpus

if TYPE_CHECKING:  # the search module imports the engine, which imports torch
    from qwen3_core.demo.search import SearchOutcome

# Left of the document's text in a row: rank, relevance, log-odds, similarity and embedding
# rank (with their gaps); the doc column's width varies with the ids shown.
_FIXED_COLUMNS = 2 + 4 + 2 + 2 + 9 + 2 + 8 + 2 + 10 + 2 + 14 + 2
_LONGEST_DOC_LABEL = 24


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_legend(corpus: Corpus, *, chunked: bool = False) -> None:
    print("\nColumns:")
    print("  rank            the order after reranking, best first (by log-odds)")
    print(f"  doc             {corpus.label_meaning}")
    print("  relevance       the reranker's score P(yes), from 0 to 1")
    print("  log-odds        logit(yes) - logit(no): relevance is its sigmoid, and it still")
    print("                  orders documents whose relevance rounds to 1")
    print("  similarity      the cosine similarity of the query's and the text's embeddings")
    print("  embedding rank  the rank by similarity, before reranking")
    if chunked:
        print("  document        the passage that scored best (long documents are scored")
        print("                  window by window)")


def print_outcome(query: str, outcome: SearchOutcome, corpus: Corpus) -> None:
    print(f"\nQuery: {query}")
    print(
        f"  stage 1  embedding search, top {outcome.candidates} of {len(corpus.documents)} "
        f"documents: {outcome.embedding_seconds:.3f} s"
    )
    print(f"  stage 2  reranking {outcome.candidates} candidates: {outcome.rerank_seconds:.3f} s")
    labels = [_shorten(corpus.labels[hit.document_id], _LONGEST_DOC_LABEL) for hit in outcome.hits]
    width = max([len("doc"), *map(len, labels)])
    text_width = _text_width(_FIXED_COLUMNS + width)
    print(
        f"  {'rank':>4}  {'doc':>{width}}  {'relevance':>9}  {'log-odds':>8}  "
        f"{'similarity':>10}  {'embedding rank':>14}  document"
    )
    for rank, (hit, label) in enumerate(zip(outcome.hits, labels, strict=True), 1):
        start, end = hit.span
        # The part that scored: the whole document, or its best window ("..." marks a cut).
        text = "..." * (start > 0) + hit.document[start:end] + "..." * (end < len(hit.document))
        print(
            f"  {rank:>4}  {label:>{width}}  {hit.rerank_score:>9.4f}  {hit.rerank_logit:>8.3f}  "
            f"{hit.embedding_score:>10.4f}  {hit.original_rank:>14}  "
            f"{_shorten(text, text_width)}"
        )


def _text_width(used: int) -> int:
    """Room for the document's text: the terminal's width, or 100 characters in a pipe."""
    if not sys.stdout.isatty():
        return 100
    return max(40, shutil.get_terminal_size().columns - used)
