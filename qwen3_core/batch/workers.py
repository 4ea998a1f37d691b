"""Internal: the callable classes that Ray Data runs as actors: each builds its engine once, in
its constructor, and reuses it for every batch it is given (loading a model per batch would cost
more than embedding it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from qwen3_core.backend_options import backend_options, without_progress_bars
from qwen3_core.batch.columns import require_absent, text_values, with_scores, with_vectors

EmbedKind = Literal["document", "query"]


def engine_keywords(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments a worker builds its engine with.

    Args:
        options: The job's ``engine_options``.

    Returns:
        ``options`` with ``show_progress=False`` on the backends in this process unless they
        set it.
    """
    # A tqdm bar per worker and batch would interleave in the logs; Ray Data shows progress.
    keywords = dict(options)
    keywords["backend"] = without_progress_bars(
        backend_options(keywords.get("backend", "transformers"))
    )
    return keywords


class EmbedWorker:
    """Adds ``output_column`` (one unit vector per row) to Arrow batches of ``text_column``.

    Args:
        model: A hub id or a local model folder.
        engine_options: Further ``Qwen3Embedder`` keyword arguments.
        text_column: The column of texts to embed.
        output_column: The new column for the vectors.
        kind: ``"document"`` or ``"query"``.
        instruction: The task instruction for queries; None: the engine's default.
    """

    def __init__(
        self,
        model: str,
        engine_options: Mapping[str, Any],
        text_column: str,
        output_column: str,
        kind: EmbedKind,
        instruction: str | None,
    ) -> None:
        from qwen3_core.embedder import Qwen3Embedder

        self.embedder = Qwen3Embedder(model, **engine_keywords(engine_options))
        self.text_column = text_column
        self.output_column = output_column
        self.kind = kind
        self.instruction = instruction

    def __call__(self, batch: Any) -> Any:
        """Embed one batch.

        Args:
            batch: A ``pyarrow.Table`` with ``text_column``.

        Returns:
            ``batch`` plus ``output_column``, ``fixed_size_list<float32>[dimension]``.

        Raises:
            ValueError: ``batch`` lacks ``text_column`` or already has ``output_column``.
            TypeError: A text is not a str.
        """
        require_absent(batch, self.output_column)
        texts = text_values(batch, self.text_column)
        if self.kind == "query":
            vectors = self.embedder.embed_queries(texts, self.instruction)
        else:
            vectors = self.embedder.embed_documents(texts)
        return with_vectors(batch, self.output_column, vectors)


class RerankWorker:
    """Adds ``output_column`` (P(yes) per row) to Arrow batches of (query, document) rows.

    Args:
        model: A hub id or a local model folder.
        engine_options: Further ``Qwen3Reranker`` keyword arguments.
        query_column: The column of queries.
        document_column: The column of documents.
        output_column: The new column for the scores.
        instruction: The task instruction; None: the engine's default.
    """

    def __init__(
        self,
        model: str,
        engine_options: Mapping[str, Any],
        query_column: str,
        document_column: str,
        output_column: str,
        instruction: str | None,
    ) -> None:
        from qwen3_core.reranker import Qwen3Reranker

        self.reranker = Qwen3Reranker(model, **engine_keywords(engine_options))
        self.query_column = query_column
        self.document_column = document_column
        self.output_column = output_column
        self.instruction = instruction

    def __call__(self, batch: Any) -> Any:
        """Score one batch.

        Args:
            batch: A ``pyarrow.Table`` with ``query_column`` and ``document_column``.

        Returns:
            ``batch`` plus ``output_column``, float32 P(yes) per row.

        Raises:
            ValueError: ``batch`` lacks an input column or already has ``output_column``.
            TypeError: A query or document is not a str.
        """
        require_absent(batch, self.output_column)
        queries = text_values(batch, self.query_column)
        documents = text_values(batch, self.document_column)
        pairs = list(zip(queries, documents, strict=True))
        scores = self.reranker.score_pairs(pairs, instruction=self.instruction)
        return with_scores(batch, self.output_column, scores)
