"""The retrieval metrics, computed by ir-measures: nDCG and recall by trec_eval's own code
(pytrec_eval, what BEIR and MTEB report with, so the numbers compare with published ones),
MRR@10 by the MS MARCO reference script (pytrec_eval's reciprocal rank has no cutoff)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

METRICS: tuple[str, ...] = ("nDCG@10", "Recall@10", "Recall@100", "MRR@10")
"""The metrics reported, by the names results use."""

# Each name above in ir-measures' notation.
_MEASURES = {"nDCG@10": "nDCG@10", "Recall@10": "R@10", "Recall@100": "R@100", "MRR@10": "RR@10"}


def score_rankings(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 of ``rankings``, averaged over the judged
    queries.

    nDCG uses the graded relevance as the gain (trec_eval's ``ndcg_cut``); recall and MRR
    count a document as relevant when its grade is 1 or more. A judged query whose documents
    are all graded 0 scores 0. Only the order of each ranking matters: it is passed to the
    library with strictly decreasing scores, so no tie is broken by the library.

    Args:
        qrels: Query id -> document id -> graded relevance.
        rankings: Query id -> document ids, best first. Every judged query needs one;
            rankings of queries without judgements are ignored.

    Returns:
        Each name of ``METRICS`` -> its mean over the judged queries.

    Raises:
        ValueError: A judged query has no ranking or an empty one, or a ranking repeats a
            document.
        ImportError: ir-measures is not installed.
    """
    if not qrels:
        raise ValueError("qrels is empty: there is no judged query to score")
    run: dict[str, dict[str, float]] = {}
    for query_id in qrels:
        ranking = rankings.get(query_id)
        if not ranking:
            raise ValueError(f"query {query_id!r} is judged but has no ranking")
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"the ranking of query {query_id!r} repeats a document")
        run[query_id] = {doc: float(len(ranking) - rank) for rank, doc in enumerate(ranking)}
    ir_measures = import_ir_measures()
    measures = [ir_measures.parse_measure(_MEASURES[name]) for name in METRICS]
    judged = {query_id: dict(judgements) for query_id, judgements in qrels.items()}
    # ir-measures picks, per measure, a provider that supports it exactly: asking pytrec_eval
    # itself for RR@10 would silently give the reciprocal rank without the cutoff.
    evaluator = ir_measures.evaluator(measures, judged)
    means = evaluator.calc_aggregate(run)
    return {name: float(means[measure]) for name, measure in zip(METRICS, measures, strict=True)}


def import_ir_measures() -> Any:
    """The ir_measures module, or an ImportError that says what to install."""
    try:
        import ir_measures
    except ImportError as exc:
        raise ImportError(
            "the retrieval metrics need ir-measures: pip install 'qwen3-rag[eval]'"
        ) from exc
    return ir_measures
