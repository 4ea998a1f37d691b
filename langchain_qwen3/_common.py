"""Internal: what the adapters share beyond their settings (``qwen3_core.adapter_settings``):
the documents in and out. No model logic lives here; everything about the models is in
``qwen3_core``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

if TYPE_CHECKING:
    from qwen3_core.reranker import RerankResult


def page_contents(documents: Any) -> list[str]:
    """The texts of ``documents``, with a TypeError naming the first item that is not a
    Document (the engine then checks the texts themselves)."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a list of Document, got {type(documents).__name__}")
    texts: list[str] = []
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise TypeError(f"documents[{index}] must be a Document, got {type(document).__name__}")
        texts.append(document.page_content)
    return texts


def with_score(document: Document, hit: RerankResult, *, span: bool) -> Document:
    """A copy of ``document`` (same class, page_content, id and metadata) with
    ``metadata["relevance_score"]`` (P(yes)) and ``metadata["relevance_logit"]`` (the
    log-odds), and with ``span`` ``metadata["relevance_span"]`` (the characters that scored);
    the input and its metadata dict are left as they were."""
    metadata = {**document.metadata, "relevance_score": hit.score, "relevance_logit": hit.logit}
    if span:
        metadata["relevance_span"] = hit.span
    return document.model_copy(update={"metadata": metadata})
