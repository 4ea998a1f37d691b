"""Internal: the retrieval metrics, computed by ir-measures: nDCG and recall by trec_eval's own code
(pytrec_eval, what BEIR and MTEB report with, so the numbers compare with published ones),
MRR@10 by the MS MARCO reference script (pytrec_eval's reciprocal rank has no cutoff)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from qwen3_core.evaluation.defaults import MAX_GRADE, MIN_GRADE
from qwen3_core.extras import install_command

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
    count a document as relevant when its grade is 1 or more. A grade of 0 or below means
    judged not relevant (trec_eval's rule; it is passed to the library as 0). A judged query
    with no relevant document scores 0. Only the order of each ranking matters: it is passed
    to the library with strictly decreasing scores, so no tie is broken by the library.

    Args:
        qrels: Query id -> document id -> graded relevance, an integer from -1000 to 1000.
        rankings: Query id -> document ids, best first. Every judged query needs one;
            rankings of queries without judgements are ignored.

    Returns:
        Each name of ``METRICS`` -> its mean over the judged queries.

    Raises:
        ValueError: A grade is not an integer or is out of range, a judged query has no
            ranking or an empty one, or a ranking repeats a document.
        ImportError: ir-measures is not installed.
    """
    if not qrels:
        raise ValueError("qrels is empty: there is no judged query to score")
    judged = {
        query_id: {doc: _gain(query_id, doc, grade) for doc, grade in judgements.items()}
        for query_id, judgements in qrels.items()
    }
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
    # ir-measures picks, per measure, a provider that supports it exactly: asking pytrec_eval
    # itself for RR@10 would silently give the reciprocal rank without the cutoff.
    evaluator = ir_measures.evaluator(measures, judged)
    means = evaluator.calc_aggregate(run)
    return {name: float(means[measure]) for name, measure in zip(METRICS, measures, strict=True)}


def _gain(query_id: str, doc_id: str, grade: object) -> int:
    """A grade as the library is given it: negative grades as 0. trec_eval reads a negative
    grade as "in the pool but unjudged" and crashes on a query judged only below zero; it
    reads grades as 32-bit integers and counts every level up to the highest."""
    where = f"query {query_id!r} and document {doc_id!r}"
    # bool is a subclass of int, but True is no grade; numpy's integers are Integral too.
    if isinstance(grade, bool) or not isinstance(grade, numbers.Integral):
        raise ValueError(f"{where}: the grade {grade!r} is not an integer")
    value = int(grade)
    if not MIN_GRADE <= value <= MAX_GRADE:
        raise ValueError(
            f"{where}: the grade {value} is out of range: grades are integers from "
            f"{MIN_GRADE} to {MAX_GRADE} (0 or below: not relevant)"
        )
    return max(value, 0)


def import_ir_measures() -> Any:
    """The ir_measures module, or an ImportError that says what to install."""
    try:
        import ir_measures
    except ImportError as exc:
        raise ImportError(
            f"the retrieval metrics need ir-measures: {install_command('eval')}"
        ) from exc
    return ir_measures
