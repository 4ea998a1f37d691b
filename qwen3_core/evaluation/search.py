"""Internal: stage 1: exact inner-product search of unit vectors (cosine similarity), by numpy for a
small corpus and by faiss's flat index for a large one."""

from __future__ import annotations

from typing import Any

import numpy as np

from qwen3_core.evaluation.defaults import FAISS_FROM_DOCUMENTS, SearchIndex
from qwen3_core.extras import install_command

# Rows of scores numpy holds at once: queries per block times documents, about 256 MiB.
_BLOCK_SCORES = 1 << 26


def uses_faiss(documents: int, index: SearchIndex) -> bool:
    """Whether stage 1 searches ``documents`` vectors with faiss.

    Args:
        documents: The corpus size.
        index: The choice given.

    Returns:
        True for ``"faiss"``, and for ``"auto"`` from ``FAISS_FROM_DOCUMENTS`` documents on.

    Raises:
        ValueError: ``index`` is not one of the choices.
    """
    if index not in ("auto", "numpy", "faiss"):
        raise ValueError(f"unknown index {index!r}: use 'auto', 'numpy' or 'faiss'")
    return index == "faiss" or (index == "auto" and documents >= FAISS_FROM_DOCUMENTS)


def top_documents(
    document_vectors: np.ndarray,
    query_vectors: np.ndarray,
    depth: int,
    *,
    index: SearchIndex = "auto",
) -> np.ndarray:
    """The ``depth`` documents of highest inner product with each query, best first.

    Args:
        document_vectors: float32 (documents, dimension), rows L2-normalised.
        query_vectors: float32 (queries, dimension), rows L2-normalised.
        depth: How many documents per query (at most the corpus size).
        index: ``"numpy"``, ``"faiss"`` or ``"auto"`` (see ``SearchIndex``).

    Returns:
        int64 (queries, depth): the documents' rows, best first.

    Raises:
        ValueError: ``depth`` is not between 1 and the corpus size, or ``index`` is unknown.
        ImportError: faiss is needed and not installed.
    """
    documents = len(document_vectors)
    if not 1 <= depth <= documents:
        raise ValueError(f"depth must be between 1 and {documents}, got {depth}")
    if uses_faiss(documents, index):
        return _faiss_search(document_vectors, query_vectors, depth)
    return _numpy_search(document_vectors, query_vectors, depth)


def _numpy_search(documents: np.ndarray, queries: np.ndarray, depth: int) -> np.ndarray:
    out = np.empty((len(queries), depth), dtype=np.int64)
    block = max(1, _BLOCK_SCORES // len(documents))
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ documents.T
        if depth < len(documents):
            best = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        else:
            best = np.broadcast_to(np.arange(len(documents)), scores.shape)
        best_scores = np.take_along_axis(scores, best, axis=1)
        # Best first; equal scores keep the corpus order.
        order = np.lexsort((best, -best_scores), axis=1)
        out[start : start + block] = np.take_along_axis(best, order, axis=1)
    return out


def _faiss_search(documents: np.ndarray, queries: np.ndarray, depth: int) -> np.ndarray:
    faiss = import_faiss()
    flat = faiss.IndexFlatIP(documents.shape[1])
    flat.add(np.ascontiguousarray(documents, dtype=np.float32))
    _, best = flat.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
    return np.asarray(best, dtype=np.int64)


def import_faiss() -> Any:
    """The faiss module, or an ImportError that says what to install."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            f"searching a large corpus needs faiss: {install_command('eval')}"
        ) from exc
    return faiss
