"""The callable classes that Ray Data runs as actors: each builds its engine once, in its
constructor, and reuses it for every batch it is given (loading a model per batch would cost
more than embedding it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from qwen3_core.batch.columns import require_absent, text_values, with_scores, with_vectors

EmbedKind = Literal["document", "query"]


def engine_keywords(options: Mapping[str, Any]) -> dict[str, Any]:
    # A tqdm bar per worker and batch would interleave in the logs; Ray Data shows progress.
    return {"show_progress": False, **options}


class EmbedWorker:
    """Adds ``output_column`` (one unit vector per row) to Arrow batches of ``text_column``."""

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
        require_absent(batch, self.output_column)
        texts = text_values(batch, self.text_column)
        if self.kind == "query":
            vectors = self.embedder.embed_queries(texts, self.instruction)
        else:
            vectors = self.embedder.embed_documents(texts)
        return with_vectors(batch, self.output_column, vectors)


class RerankWorker:
    """Adds ``output_column`` (P(yes) per row) to Arrow batches of (query, document) rows."""

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
        require_absent(batch, self.output_column)
        queries = text_values(batch, self.query_column)
        documents = text_values(batch, self.document_column)
        pairs = list(zip(queries, documents, strict=True))
        scores = self.reranker.score_pairs(pairs, self.instruction)
        return with_scores(batch, self.output_column, scores)
