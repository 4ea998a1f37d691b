"""Measure two-stage retrieval on your own data, in BEIR format (``qwen3-rag eval`` runs it).

```python
from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.evaluation import evaluate, load_beir, plot_results

dataset = load_beir("my-dataset", split="test")
result = evaluate(dataset, Qwen3Embedder(), Qwen3Reranker(), candidates=[10, 20, 50])
print(result.table())
plot_results(result, "eval.png")
```

The metrics need the ``eval`` extra (``pip install -e ".[eval]"`` in a clone: ir-measures,
matplotlib for the plot, faiss for large corpora); reading a dataset needs none of them.
Nothing here imports torch: the engines are handed in. The names are imported on first use,
so the command line checks a dataset without importing numpy or the metric library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwen3_core.exports import lazy_exports

if TYPE_CHECKING:
    from qwen3_core.errors import DatasetError
    from qwen3_core.evaluation.beir import (
        CORPUS_FILE,
        QRELS_FOLDER,
        QUERIES_FILE,
        BeirDataset,
        document_text,
        load_beir,
    )
    from qwen3_core.evaluation.cache import VectorCache, default_cache_folder
    from qwen3_core.evaluation.defaults import (
        DEFAULT_CANDIDATES,
        FAISS_FROM_DOCUMENTS,
        STAGE1_DEPTH,
        SearchIndex,
    )
    from qwen3_core.evaluation.metrics import METRICS, score_rankings
    from qwen3_core.evaluation.plot import plot_results
    from qwen3_core.evaluation.results import EvaluationResult, StageResult
    from qwen3_core.evaluation.run import evaluate
    from qwen3_core.evaluation.search import top_documents

__all__ = [
    "CORPUS_FILE",
    "DEFAULT_CANDIDATES",
    "FAISS_FROM_DOCUMENTS",
    "METRICS",
    "QRELS_FOLDER",
    "QUERIES_FILE",
    "STAGE1_DEPTH",
    "BeirDataset",
    "DatasetError",
    "EvaluationResult",
    "SearchIndex",
    "StageResult",
    "VectorCache",
    "default_cache_folder",
    "document_text",
    "evaluate",
    "load_beir",
    "plot_results",
    "score_rankings",
    "top_documents",
]

_HOMES = {
    "BeirDataset": "qwen3_core.evaluation.beir",
    "CORPUS_FILE": "qwen3_core.evaluation.beir",
    "DEFAULT_CANDIDATES": "qwen3_core.evaluation.defaults",
    "DatasetError": "qwen3_core.errors",
    "EvaluationResult": "qwen3_core.evaluation.results",
    "FAISS_FROM_DOCUMENTS": "qwen3_core.evaluation.defaults",
    "METRICS": "qwen3_core.evaluation.metrics",
    "QRELS_FOLDER": "qwen3_core.evaluation.beir",
    "QUERIES_FILE": "qwen3_core.evaluation.beir",
    "STAGE1_DEPTH": "qwen3_core.evaluation.defaults",
    "SearchIndex": "qwen3_core.evaluation.defaults",
    "StageResult": "qwen3_core.evaluation.results",
    "VectorCache": "qwen3_core.evaluation.cache",
    "default_cache_folder": "qwen3_core.evaluation.cache",
    "document_text": "qwen3_core.evaluation.beir",
    "evaluate": "qwen3_core.evaluation.run",
    "load_beir": "qwen3_core.evaluation.beir",
    "plot_results": "qwen3_core.evaluation.plot",
    "score_rankings": "qwen3_core.evaluation.metrics",
    "top_documents": "qwen3_core.evaluation.search",
}


__getattr__, __dir__ = lazy_exports("qwen3_core.evaluation", _HOMES, globals())
