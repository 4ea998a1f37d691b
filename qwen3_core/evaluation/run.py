"""Internal: one evaluation of two-stage retrieval on a BEIR-format dataset: embed the corpus (or
read its cached vectors), stage 1 alone, then reranking for each candidate count."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from qwen3_core.batching import unique_with_inverse
from qwen3_core.evaluation.beir import BeirDataset
from qwen3_core.evaluation.cache import VectorCache
from qwen3_core.evaluation.defaults import DEFAULT_CANDIDATES, STAGE1_DEPTH, SearchIndex
from qwen3_core.evaluation.metrics import import_ir_measures, score_rankings
from qwen3_core.evaluation.results import EvaluationResult, StageResult
from qwen3_core.evaluation.search import import_faiss, top_documents, uses_faiss

if TYPE_CHECKING:  # the engines import torch; an evaluation is handed them
    from qwen3_core.embedder import Qwen3Embedder
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import Qwen3VLReranker
    from qwen3_core.reranker import Qwen3Reranker

    Embedder = Qwen3Embedder | Qwen3VLEmbedder
    Reranker = Qwen3Reranker | Qwen3VLReranker

logger = logging.getLogger(__name__)

# Texts per embedding call and (query, document) pairs per reranking call: enough for full
# batches on a GPU, few enough for the progress bars to move.
_EMBED_CHUNK = 512
_RERANK_CHUNK = 512


@dataclass(frozen=True)
class _CorpusVectors:
    vectors: np.ndarray
    seconds: float
    embedded: int
    cache_file: Path | None


def evaluate(
    dataset: BeirDataset,
    embedder: Embedder,
    reranker: Reranker,
    *,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    instruction: str | None = None,
    cache: bool = True,
    cache_folder: str | os.PathLike[str] | None = None,
    index: SearchIndex = "auto",
    progress: bool | None = None,
) -> EvaluationResult:
    """Measure stage 1 alone and stage 1 followed by reranking on ``dataset``.

    The corpus is embedded once (or its vectors read from the cache). Stage 1 ranks the
    ``max(100, max(candidates))`` documents of highest cosine similarity per query. The
    reranker scores the largest candidate list once, in steps of increasing depth: the top
    ``k`` candidates of each query are scored before the next ones, so the ranking for ``k``
    candidates is the one ``reranker.rerank`` gives stage 1's top ``k`` alone, and its time
    is the time scoring them took (the query's part of the prompt runs once per step, a
    little more work than one call for the largest count). With ``k`` candidates the final
    ranking holds ``k`` documents: Recall@100 is then the share of relevant documents among
    the candidates, the most any reranker could reach. Stage 1 and the reranking are timed
    after one untimed call of their engine, so start-up costs do not count as per-query time.

    A corpus whose records name images (``dataset.images``) needs the Qwen3-VL engines,
    which read each document's image and text.

    Args:
        dataset: The dataset (``load_beir``).
        embedder: The embedding engine (stage 1): ``Qwen3Embedder``, or ``Qwen3VLEmbedder``.
        reranker: The reranker (stage 2): ``Qwen3Reranker``, or ``Qwen3VLReranker``.
        candidates: The counts of stage-1 candidates to rerank; distinct, each at least 1.
        instruction: The task for the queries and the reranker; None: each engine's own.
        cache: Read the corpus vectors from the cache, and write them there when missing (a
            file that cannot be used, or written, is one warning: the run goes on).
        cache_folder: The cache's folder; None: ``default_cache_folder()``.
        index: How stage 1 searches (``"auto"``: faiss for a large corpus, else numpy).
        progress: Progress bars on stderr; None: only on a terminal.

    Returns:
        The metrics and times of each row.

    Raises:
        ValueError: ``candidates`` is empty, repeats a count or has one below 1, ``index``
            is unknown, ``cache_folder`` is not a folder, or the corpus has images and an
            engine is a text one.
        ImportError: ir-measures (or, for a large corpus, faiss) is not installed.
    """
    counts = _check_candidates(candidates)
    if dataset.images:
        _check_reads_images(embedder, reranker, dataset.images)
    # A missing library or an unknown index fails before the corpus is embedded.
    import_ir_measures()
    if uses_faiss(len(dataset.documents), index):
        import_faiss()
    show = sys.stderr.isatty() if progress is None else progress
    corpus = _corpus_vectors(dataset, embedder, cache, cache_folder, show)

    documents = len(dataset.documents)
    depth = min(documents, max(STAGE1_DEPTH, *counts))
    # One untimed call first: start-up costs (allocations, kernel choice) are not per query.
    embedder.embed_queries(dataset.queries[:1], instruction)
    start = time.perf_counter()
    query_vectors = _embed(
        lambda texts: embedder.embed_queries(texts, instruction),
        dataset.queries,
        show,
        "embedding the queries",
    )
    found = top_documents(corpus.vectors, query_vectors, depth, index=index)
    stage1_seconds = time.perf_counter() - start
    ids = dataset.document_ids
    stage1_rankings = {
        query_id: [ids[i] for i in row]
        for query_id, row in zip(dataset.query_ids, found, strict=True)
    }
    stage1 = StageResult(
        None, 0, score_rankings(dataset.qrels, stage1_rankings), stage1_seconds, stage1_rankings
    )

    reranking = _rerank_rows(dataset, reranker, found, counts, instruction, show)
    return EvaluationResult(
        dataset=dataset.name,
        split=dataset.split,
        documents=documents,
        queries=len(dataset.query_ids),
        embedding_model=str(embedder.model_path),
        reranker_model=str(reranker.model_path),
        corpus_seconds=corpus.seconds,
        documents_embedded=corpus.embedded,
        cache_file=corpus.cache_file,
        search="faiss" if uses_faiss(documents, index) else "numpy",
        stage1=stage1,
        reranking=reranking,
    )


def _check_reads_images(embedder: object, reranker: object, images: int) -> None:
    from qwen3_core.multimodal.embedder import Qwen3VLEmbedder
    from qwen3_core.multimodal.reranker import Qwen3VLReranker

    for engine, wanted in ((embedder, Qwen3VLEmbedder), (reranker, Qwen3VLReranker)):
        if not isinstance(engine, wanted):
            raise ValueError(
                f"the corpus has {images} document(s) with an image: {type(engine).__name__} "
                f"reads text only; use {wanted.__name__}"
            )


def _check_candidates(candidates: Sequence[int]) -> list[int]:
    counts = list(candidates)
    if not counts:
        raise ValueError("candidates is empty: give at least one count to rerank")
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"each candidate count must be an integer of at least 1: {count!r}")
    if len(set(counts)) != len(counts):
        raise ValueError(f"candidates repeats a count: {counts}")
    return [int(count) for count in counts]


def _corpus_vectors(
    dataset: BeirDataset,
    embedder: Embedder,
    cache: bool,
    cache_folder: str | os.PathLike[str] | None,
    show: bool,
) -> _CorpusVectors:
    store = VectorCache(cache_folder) if cache else None
    key = store.key(embedder, dataset.corpus_sha256, len(dataset.documents)) if store else None
    if store is not None and key is not None:
        start = time.perf_counter()
        vectors = store.load(key)
        if vectors is not None:
            return _CorpusVectors(vectors, time.perf_counter() - start, 0, store.path(key))
    start = time.perf_counter()
    vectors = _embed(
        embedder.embed_documents,
        dataset.document_inputs(),
        show,
        "embedding the corpus",
        keys=dataset.document_keys(),
    )
    seconds = time.perf_counter() - start
    written: Path | None = None
    if store is not None and key is not None:
        try:
            written = store.save(key, vectors)
        except OSError as exc:  # the vectors are good: the evaluation goes on without them kept
            logger.warning(
                "The corpus vectors could not be kept in %s (%s); the next run embeds the "
                "corpus again.",
                store.path(key),
                exc.strerror or exc,
            )
    return _CorpusVectors(vectors, seconds, len(dataset.documents), written)


def _embed(
    embed: Callable[[list[Any]], np.ndarray],
    texts: Sequence[Any],
    show: bool,
    description: str,
    keys: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """``embed`` over ``texts`` with a bar: each distinct text once (a corpus may repeat a
    document under two ids: both then get the same vector), in chunks of similar lengths
    (less padding). ``keys`` (default: the texts) say which inputs are the same."""
    distinct, inverse = unique_with_inverse(list(texts if keys is None else keys))
    first = np.zeros(len(distinct), dtype=np.int64)
    first[inverse] = np.arange(len(texts))  # an input of each key (they are all the same)
    order = np.argsort([-len(str(key)) for key in distinct], kind="stable")
    out: np.ndarray | None = None
    with tqdm(total=len(texts), desc=description, unit="text", disable=not show) as bar:
        for start in range(0, len(distinct), _EMBED_CHUNK):
            rows = order[start : start + _EMBED_CHUNK]
            vectors = embed([texts[first[i]] for i in rows])
            if out is None:
                out = np.empty((len(distinct), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            bar.update(len(rows))
        bar.update(len(texts) - len(distinct))
    assert out is not None  # a dataset has documents and queries
    spread: np.ndarray = out[inverse]
    return spread


def _rerank_rows(
    dataset: BeirDataset,
    reranker: Reranker,
    found: np.ndarray,
    counts: list[int],
    instruction: str | None,
    show: bool,
) -> list[StageResult]:
    """One row per candidate count. The candidates are scored in steps of increasing depth
    (each step: the ranks between two counts, for every query), so no pair is scored twice
    and each count's time is the time its own candidates took."""
    documents = len(dataset.documents)
    inputs = dataset.document_inputs()
    depths = sorted({min(count, documents) for count in counts})
    # Untimed: two documents of one query, the shape every timed call has (the query's part
    # of the prompt shared by its documents).
    reranker.score_pairs(
        [(dataset.queries[0], inputs[i]) for i in found[0, :2]],
        instruction=instruction,
    )
    scores = np.empty((len(found), depths[-1]), dtype=np.float32)
    copies = _Copies(dataset.document_keys())
    rows: dict[int, StageResult] = {}
    elapsed = 0.0
    shallower = 0
    with tqdm(
        total=len(found) * depths[-1], desc="reranking", unit="pair", disable=not show
    ) as bar:
        for depth in depths:
            start = time.perf_counter()
            for chunk in _pair_chunks(len(found), shallower, depth):
                fresh = [(q, rank) for q, rank in chunk if not copies.fill(scores, found, q, rank)]
                pairs = [(dataset.queries[q], inputs[found[q, rank]]) for q, rank in fresh]
                values: Sequence[float] = (
                    reranker.score_pairs(pairs, instruction=instruction).tolist() if pairs else []
                )
                for (q, rank), value in zip(fresh, values, strict=True):
                    scores[q, rank] = value
                    copies.keep(found, q, rank, value)
                bar.update(len(chunk))
            elapsed += time.perf_counter() - start
            shallower = depth
            rankings = {
                query_id: [
                    dataset.document_ids[found[q, i]]
                    for i in _rerank_order(
                        reranker,
                        dataset,
                        inputs,
                        q,
                        found[q, :depth],
                        scores[q, :depth],
                        instruction,
                    )
                ]
                for q, query_id in enumerate(dataset.query_ids)
            }
            metrics = score_rankings(dataset.qrels, rankings)
            for count in counts:
                if min(count, documents) == depth:
                    rows[count] = StageResult(count, depth, metrics, elapsed, rankings)
    return [rows[count] for count in counts]


class _Copies:
    """Scores of documents whose text the corpus repeats under other ids, per query: a copy
    met in a later step takes the score its twin got, so the two tie exactly, as they do
    when ``Qwen3Reranker.rerank`` scores them in one call."""

    def __init__(self, documents: Sequence[Hashable]) -> None:
        _, first = unique_with_inverse(documents)
        repeated = np.bincount(first) > 1
        self._text = {int(row): int(text) for row, text in enumerate(first) if repeated[int(text)]}
        self._scores: dict[tuple[int, int], float] = {}

    def fill(self, scores: np.ndarray, found: np.ndarray, query: int, rank: int) -> bool:
        """Set a copy's score from its twin's; False when it has to be scored."""
        text = self._text.get(int(found[query, rank]))
        known = None if text is None else self._scores.get((query, text))
        if known is None:
            return False
        scores[query, rank] = known
        return True

    def keep(self, found: np.ndarray, query: int, rank: int, score: float) -> None:
        text = self._text.get(int(found[query, rank]))
        if text is not None:
            self._scores.setdefault((query, text), score)


def _rerank_order(
    reranker: Reranker,
    dataset: BeirDataset,
    inputs: Sequence[Any],
    query: int,
    candidates: np.ndarray,
    scores: np.ndarray,
    instruction: str | None,
) -> list[int]:
    """The candidates' positions in the order ``reranker.rerank`` gives them: by score, best
    first. Scores that are equal (P(yes) rounds to 1.0 for several very relevant documents)
    are ordered by ``rerank`` itself on just those documents, in stage 1's order: it breaks
    such ties as it would among all the candidates, so the order is that of reranking these
    candidates alone. Not timed: a search reranks once and never needs this step."""
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and scores[order[end]] == scores[order[start]]:
            end += 1
        if end - start > 1:
            tied = sorted(order[start:end])
            ranked = reranker.rerank(
                dataset.queries[query],
                [inputs[candidates[i]] for i in tied],
                instruction=instruction,
            )
            order[start:end] = [tied[result.index] for result in ranked]
        start = end
    return order


def _pair_chunks(queries: int, shallower: int, depth: int) -> Iterable[list[tuple[int, int]]]:
    """(query, rank) for ranks in [shallower, depth) of every query, in chunks that keep each
    query's pairs together (the reranker runs a query's shared prompt prefix once)."""
    chunk: list[tuple[int, int]] = []
    for q in range(queries):
        chunk.extend((q, rank) for rank in range(shallower, depth))
        if len(chunk) >= _RERANK_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
