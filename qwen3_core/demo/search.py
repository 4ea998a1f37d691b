"""Internal: the two-stage search: embedding cosine top-k (coarse), then reranking (fine)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qwen3_core.document_windows import DocumentBudget
from qwen3_core.embedder import Qwen3Embedder
from qwen3_core.reranker import Qwen3Reranker
from qwen3_core.tokenization import TRUNCATE


@dataclass(frozen=True)
class SearchHit:
    """One document in the final ranking."""

    document_id: int
    document: str
    embedding_score: float
    rerank_score: float
    """P(yes), the reranker's relevance."""
    rerank_logit: float
    """The log-odds logit("yes") - logit("no"), of which ``rerank_score`` is the sigmoid."""
    original_rank: int
    """1-based rank after the embedding stage."""
    span: tuple[int, int]
    """The characters of the document that scored (the best window, chunked)."""


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[SearchHit]
    candidates: int
    embedding_seconds: float
    rerank_seconds: float


class TwoStageSearch:
    """Embeds a corpus once; each search embeds the query, takes the ``top_k`` documents by
    cosine similarity and reranks them to the best ``top_n``."""

    def __init__(
        self,
        embedder: Qwen3Embedder,
        reranker: Qwen3Reranker,
        budget: DocumentBudget = TRUNCATE,
    ) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.budget = budget
        self.documents: list[str] = []
        self._vectors = np.zeros((0, embedder.dimension), dtype=np.float32)

    def index(self, documents: Sequence[str]) -> float:
        """Embed the corpus; returns the seconds it took."""
        start = time.perf_counter()
        self._vectors = self.embedder.embed_documents(documents)
        self.documents = list(documents)
        return time.perf_counter() - start

    def search(self, query: str, top_k: int = 8, top_n: int = 3) -> SearchOutcome:
        start = time.perf_counter()
        # Unit vectors: the dot product is the cosine similarity.
        similarity = self._vectors @ self.embedder.embed_queries([query])[0]
        candidates = np.argsort(-similarity, kind="stable")[: min(top_k, len(self.documents))]
        embedding_seconds = time.perf_counter() - start

        start = time.perf_counter()
        ranked = self.reranker.rerank(
            query,
            [self.documents[i] for i in candidates],
            top_n=top_n,
            max_document_tokens=self.budget.max_document_tokens,
            long_documents=self.budget.long_documents,
        )
        rerank_seconds = time.perf_counter() - start
        hits = [
            SearchHit(
                document_id=int(candidates[r.index]),
                document=r.document,
                embedding_score=float(similarity[candidates[r.index]]),
                rerank_score=r.score,
                rerank_logit=r.logit,
                original_rank=r.index + 1,
                span=r.span,
            )
            for r in ranked
        ]
        return SearchOutcome(hits, len(candidates), embedding_seconds, rerank_seconds)
