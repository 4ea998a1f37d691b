"""Internal: ``qwen3-rag eval``, once its arguments are checked: load the models, evaluate, print
the table, and write the JSON and the plot asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen3_core.cli.eval_checks import EvalRequest


def run_eval(request: EvalRequest) -> int:
    from qwen3_core.cli.eval_models import load_eval_engines
    from qwen3_core.evaluation.run import evaluate

    dataset = request.dataset
    note = ""
    unjudged = dataset.unjudged_queries
    if unjudged:
        which = "query" if unjudged == 1 else "queries"
        have = "has" if unjudged == 1 else "have"
        note = (
            f" ({unjudged} other {which} of {dataset.queries_file.name} {have} no judgement "
            f"in {dataset.qrels_file.name} and {'is' if unjudged == 1 else 'are'} left out)"
        )
    judged = len(dataset.query_ids)
    images = f" ({dataset.images} with an image)" if dataset.images else ""
    print(
        f"Dataset {dataset.name}: {len(dataset.documents)} documents{images}, {judged} "
        f"{'query' if judged == 1 else 'queries'} judged in the {dataset.split} split{note}."
    )
    embedder, reranker = load_eval_engines(request)
    result = evaluate(
        dataset,
        embedder,
        reranker,
        candidates=request.candidates,
        cache=request.cache,
        cache_folder=request.cache_dir,
        index=request.index,
    )
    print()
    print(result.table(dataset=False))  # the dataset was summed up above
    if result.cache_file is not None:
        done = "Read" if result.corpus_from_cache else "Kept"
        print(f"{done} the corpus vectors in {result.cache_file}.")
    models = "tiny random test models" if request.tiny else None
    if request.output is not None:
        data: dict[str, Any] = {**result.to_dict(), "settings": _settings(request)}
        if models:
            data["models"]["note"] = models
        request.output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"Wrote the results to {request.output}.")
    if request.plot is not None:
        from qwen3_core.evaluation.plot import plot_results

        names = models or (
            f"{Path(result.embedding_model).name} + {Path(result.reranker_model).name}"
        )
        title = (
            f"{dataset.name} ({dataset.split} split, {result.documents} documents, "
            f"{result.queries} queries)\n{names}"
        )
        plot_results(result, request.plot, title=title)
        print(f"Drew nDCG@10 and the time per query in {request.plot}.")
    return 0


def _settings(request: EvalRequest) -> dict[str, Any]:
    return {
        "candidates": request.candidates,
        "instruction": request.instruction,
        "dimensions": request.dimensions,
        "max_length": request.max_length,
        "backend": request.backend.name,
        "embedding_model": None if request.tiny else request.embedding_model,
        "reranker_model": None if request.tiny else request.reranker_model,
    }
