"""``Qwen3Rerank``: Qwen3-Reranker as a LangChain document compressor."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables.config import run_in_executor
from pydantic import Field

from langchain_qwen3._common import page_contents, with_score
from langchain_qwen3._reranker_settings import Qwen3RerankerSettings
from qwen3_core.validation import check_text


class Qwen3Rerank(Qwen3RerankerSettings, BaseDocumentCompressor):
    """Reorders retrieved documents by Qwen3-Reranker's P(yes), best first.

    The returned documents are copies of the inputs (same class, ``page_content``, ``id`` and
    metadata) with ``metadata["relevance_score"]`` = P(yes) in [0, 1]; at most ``top_n`` of
    them, without those under ``score_threshold``. Equal scores keep their input order.

    ```python
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_qwen3 import Qwen3Rerank

    retriever = ContextualCompressionRetriever(
        base_compressor=Qwen3Rerank(model="Qwen/Qwen3-Reranker-0.6B", top_n=3),
        base_retriever=vector_store.as_retriever(search_kwargs={"k": 20}),
    )
    ```
    """

    top_n: int | None = Field(default=3, ge=0)
    """Most documents to return; None: all of them."""
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Drop documents whose P(yes) is below this; None: keep every score."""

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """``documents`` best first with their scores, at most ``top_n``, none under
        ``score_threshold``."""
        texts = page_contents(documents)  # checked before anything is loaded
        check_text("query", query)
        if not texts:
            return []
        hits = self._engine.get().rerank(
            query, texts, top_n=self.top_n, instruction=self.instruction
        )
        threshold = self.score_threshold
        return [
            with_score(documents[hit.index], hit.score)
            for hit in hits
            if threshold is None or hit.score >= threshold
        ]

    # Explicit rather than inherited: the guarantee that scoring (and the first call's weight
    # loading) never blocks the event loop should not rest on a base-class default.
    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """``compress_documents`` in a worker thread."""
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks)
