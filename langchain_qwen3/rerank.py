"""Internal (import its public names from ``langchain_qwen3``): ``Qwen3Rerank``: Qwen3-Reranker
as a LangChain document compressor."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from langchain_qwen3._common import page_contents, with_score
from qwen3_core.adapter_settings import RerankerSettings
from qwen3_core.defaults import MIN_TOP_N, TOP_N
from qwen3_core.validation import check_text

if TYPE_CHECKING:
    from qwen3_core.lazy import LazyEngine


class DocumentRerank(BaseDocumentCompressor):
    """What ``Qwen3Rerank`` and ``Qwen3VLRerank`` share: the engine call, sync and async, and
    the returned documents (copies with the scores, best first, at most ``top_n``, none under
    ``score_threshold``). A subclass turns the documents into engine inputs (``_inputs``);
    its settings mixin gives the engine."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    if TYPE_CHECKING:  # given by the adapter's settings mixin (qwen3_core.adapter_settings)
        _engine: LazyEngine[Any]

        @property
        def engine(self) -> Any: ...

        def call_settings(self) -> dict[str, Any]: ...

    top_n: int | None = Field(default=TOP_N, ge=MIN_TOP_N)
    """Most documents to return; None: all of them."""
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Drop documents whose P(yes) is below this; None: keep every score."""

    @abstractmethod
    def _inputs(self, documents: Sequence[Document]) -> list[Any]:
        """The engine input of each document, checked (a TypeError or ValueError naming
        ``documents[i]``) before anything is loaded."""

    def _spans_kept(self) -> bool:
        """Whether the returned documents keep the scored part's offsets in their metadata."""
        return False

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """``documents`` best first with their scores, at most ``top_n``, none under
        ``score_threshold``."""
        inputs = self._inputs(documents)  # checked before anything is loaded
        check_text("query", query)
        if not inputs:
            return []
        hits = self.engine.rerank(query, inputs, top_n=self.top_n, **self.call_settings())
        return self._kept(documents, hits)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """``compress_documents`` without blocking the event loop: on the server backend it
        awaits the network; locally the model runs in a worker thread."""
        inputs = self._inputs(documents)
        check_text("query", query)
        if not inputs:
            return []
        engine = await self._engine.aget()
        hits = await engine.arerank(query, inputs, top_n=self.top_n, **self.call_settings())
        return self._kept(documents, hits)

    def _kept(self, documents: Sequence[Document], hits: list[Any]) -> list[Document]:
        threshold = self.score_threshold
        spans = self._spans_kept()
        return [
            with_score(documents[hit.index], hit, span=spans)
            for hit in hits
            if threshold is None or hit.score >= threshold
        ]


class Qwen3Rerank(RerankerSettings, DocumentRerank):
    """Reorders retrieved documents by Qwen3-Reranker's judgement, best first.

    The returned documents are copies of the inputs (same class, ``page_content``, ``id`` and
    metadata) with ``metadata["relevance_score"]`` = P(yes) in [0, 1] and
    ``metadata["relevance_logit"]`` = the log-odds logit("yes") - logit("no"), of which
    P(yes) is the sigmoid; at most ``top_n`` of them, without those under
    ``score_threshold``. The order is by log-odds, which still tells apart documents whose
    P(yes) rounds to 1.0; equal log-odds keep their input order. With
    ``long_documents="chunk"``, ``metadata["relevance_span"]`` is the (start, end) character
    offsets of the window that scored best, so an app can show that passage.

    ```python
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_qwen3 import Qwen3Rerank

    retriever = ContextualCompressionRetriever(
        base_compressor=Qwen3Rerank(model="Qwen/Qwen3-Reranker-0.6B", top_n=3),
        base_retriever=vector_store.as_retriever(search_kwargs={"k": 20}),
    )
    ```

    ``engine=Qwen3Reranker(...)`` uses a ready engine: the settings it fixes (``model``,
    ``backend``, ...: each field says) are then read from it, and giving any of them as well
    is an error; the per-call ones (``instruction``, ...) are the engine's unless given.
    ``engine`` is the engine, built on first access.
    """

    def _inputs(self, documents: Sequence[Document]) -> list[Any]:
        return page_contents(documents)

    def _spans_kept(self) -> bool:
        return self.long_documents == "chunk"
