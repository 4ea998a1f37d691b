"""Internal: what an evaluation reports: the metrics and time of stage 1 alone and of each reranking
depth, as data (``to_dict``, for JSON) and as a table for the terminal (``table``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3_core.evaluation.metrics import METRICS


@dataclass(frozen=True)
class StageResult:
    """One row of the results: stage 1 alone, or stage 1 followed by reranking."""

    candidates: int | None
    """The candidate count asked for (the top-k of stage 1 that is reranked); None for stage
    1 alone."""
    reranked: int
    """Documents reranked per query: ``candidates``, or the whole corpus when it is smaller;
    0 for stage 1 alone."""
    metrics: dict[str, float]
    """Each name of ``METRICS`` -> its mean over the judged queries."""
    seconds: float
    """Stage 1: embedding the queries and searching. Reranking: scoring the top
    ``reranked`` candidates of every query (stage 1's time not included)."""
    rankings: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    """Query id -> document ids, best first: stage 1's top documents, or the reranked
    candidates (``reranked`` of them)."""

    @property
    def label(self) -> str:
        """The row's name in the table."""
        if self.candidates is None:
            return "stage 1: embedding search"
        if self.reranked < self.candidates:
            return f"+ reranking top {self.candidates} (all {self.reranked})"
        return f"+ reranking top {self.candidates}"


@dataclass(frozen=True)
class EvaluationResult:
    """The outcome of ``evaluate``."""

    dataset: str
    """The dataset's name."""
    split: str
    """The split whose judgements were used."""
    documents: int
    """The corpus size."""
    queries: int
    """The judged queries evaluated."""
    embedding_model: str
    """The embedding model's folder."""
    reranker_model: str
    """The reranker's folder."""
    corpus_seconds: float
    """Time to embed the corpus, or to read its vectors from the cache."""
    documents_embedded: int
    """Documents embedded by this run: 0 when the vectors came from the cache."""
    cache_file: Path | None
    """The file the corpus vectors were read from or written to; None without a cache."""
    search: str
    """How stage 1 searched: ``"numpy"`` or ``"faiss"``."""
    stage1: StageResult
    """Stage 1 alone: the top documents by cosine similarity."""
    reranking: list[StageResult]
    """Stage 1 followed by reranking, one row per candidate count, in the order asked."""

    @property
    def rows(self) -> list[StageResult]:
        """Stage 1 alone, then each reranking row."""
        return [self.stage1, *self.reranking]

    @property
    def corpus_from_cache(self) -> bool:
        """Whether the corpus vectors were read from the cache."""
        return self.documents_embedded == 0

    def to_dict(self) -> dict[str, Any]:
        """The results as JSON-ready data (what ``qwen3-rag eval --output`` writes).

        Returns:
            The dataset, the models, the corpus step, and one entry per row with its metrics,
            seconds and milliseconds per query.
        """
        return {
            "dataset": {
                "name": self.dataset,
                "split": self.split,
                "documents": self.documents,
                "queries": self.queries,
            },
            "models": {"embedding": self.embedding_model, "reranker": self.reranker_model},
            "corpus": {
                "seconds": self.corpus_seconds,
                "documents_embedded": self.documents_embedded,
                "from_cache": self.corpus_from_cache,
                "cache_file": None if self.cache_file is None else str(self.cache_file),
            },
            "search": self.search,
            "metrics": list(METRICS),
            "rows": [
                {
                    "stage": "embedding" if row.candidates is None else "reranking",
                    "candidates": row.candidates,
                    "reranked": row.reranked,
                    "metrics": dict(row.metrics),
                    "seconds": row.seconds,
                    "ms_per_query": self.ms_per_query(row),
                }
                for row in self.rows
            ],
        }

    def ms_per_query(self, row: StageResult) -> float:
        """A row's time per judged query, in milliseconds.

        Args:
            row: One of ``rows``.

        Returns:
            ``row.seconds`` over the queries, in milliseconds.
        """
        return 1000 * row.seconds / max(self.queries, 1)

    def table(self, *, dataset: bool = True) -> str:
        """The results as a text table for a terminal.

        Args:
            dataset: Begin with a line that names the dataset, its split and its size (left
                out where they were already printed).

        Returns:
            Lines: the dataset, the corpus step, then one row per stage with its metrics and
            times.
        """
        if self.corpus_from_cache:
            corpus = f"read from the cache in {self.corpus_seconds:.2f} s"
        else:
            corpus = f"{self.corpus_seconds:.2f} s ({self.documents_embedded} documents embedded)"
        lines = [f"Corpus vectors: {corpus}.", ""]
        if dataset:
            lines.insert(
                0,
                f"Dataset {self.dataset}, split {self.split}: {self.documents} documents, "
                f"{self.queries} judged queries.",
            )
        width = max(len(row.label) for row in self.rows)
        header = "".join(f"{name:>12}" for name in METRICS)
        lines.append(f"{'':<{width}}{header}{'time (s)':>12}{'ms/query':>12}")
        for row in self.rows:
            values = "".join(f"{row.metrics[name]:>12.4f}" for name in METRICS)
            lines.append(
                f"{row.label:<{width}}{values}{row.seconds:>12.3f}{self.ms_per_query(row):>12.2f}"
            )
        lines += [
            "",
            "Time: stage 1 embeds the queries and searches the corpus vectors; a reranking",
            "row is the time to rerank that many candidates of every query, after stage 1.",
        ]
        return "\n".join(lines)
