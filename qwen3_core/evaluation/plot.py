"""Internal: the trade-off of an evaluation as a PNG: nDCG@10 and the time per query against the
number of candidates reranked, stage 1 alone drawn as a baseline."""

from __future__ import annotations

import os
from pathlib import Path

from qwen3_core.evaluation.results import EvaluationResult
from qwen3_core.extras import install_command


def plot_results(
    result: EvaluationResult, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Draw ``result`` into a PNG file: nDCG@10 (left) and the mean time per query of stage 1
    plus reranking (right), each against the candidate count, with stage 1 alone dashed.

    Drawn on matplotlib's Agg canvas, without pyplot: a notebook's plotting backend and open
    figures are left as they were.

    Args:
        result: An evaluation's result.
        path: The PNG file to write.
        title: The figure's title; None: the dataset, its split and the corpus size.

    Returns:
        The file written.

    Raises:
        ImportError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"the plot needs matplotlib: {install_command('eval')}") from exc

    rows = sorted(result.reranking, key=lambda row: row.reranked)
    counts = [row.reranked for row in rows]
    stage1_ms = result.ms_per_query(result.stage1)
    figure = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    quality, latency = figure.subplots(1, 2)

    quality.plot(counts, [row.metrics["nDCG@10"] for row in rows], "o-", label="stage 1 + rerank")
    quality.axhline(result.stage1.metrics["nDCG@10"], linestyle="--", color="gray")
    quality.plot([], [], "--", color="gray", label="stage 1 alone")
    quality.set_ylabel("nDCG@10")

    latency.plot(
        counts,
        [stage1_ms + result.ms_per_query(row) for row in rows],
        "o-",
        color="tab:orange",
        label="stage 1 + rerank",
    )
    latency.axhline(stage1_ms, linestyle="--", color="gray")
    latency.plot([], [], "--", color="gray", label="stage 1 alone")
    latency.set_ylabel("mean time per query (ms)")
    latency.set_ylim(bottom=0)

    for axes in (quality, latency):
        axes.set_xlabel("candidates reranked per query")
        if len(counts) > 1 and counts[-1] / counts[0] >= 10:
            axes.set_xscale("log")
        axes.set_xticks(counts, [str(count) for count in counts])
        axes.minorticks_off()
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    figure.suptitle(
        title
        or f"{result.dataset} ({result.split} split): {result.documents} documents, "
        f"{result.queries} queries"
    )
    out = Path(path)
    figure.savefig(out, format="png")
    return out
