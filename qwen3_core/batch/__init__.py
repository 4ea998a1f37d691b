"""Corpus jobs on Ray Data: embed a table of texts, or score a table of (query, document)
pairs, with one engine per Ray worker.

Ray is an optional extra (``pip install -e ".[ray]"`` in a clone), imported only when a job is
built: importing this package does not import it.
"""

from qwen3_core.batch.jobs import embed_dataset, rerank_dataset
from qwen3_core.batch.optional import EXTRA_HINT

__all__ = ["EXTRA_HINT", "embed_dataset", "rerank_dataset"]
