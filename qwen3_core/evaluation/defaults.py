"""Internal: the evaluation's defaults, in a module that imports nothing: the command line reads
them while it parses its arguments."""

from __future__ import annotations

from typing import Literal

DEFAULT_CANDIDATES: tuple[int, ...] = (10, 20, 50, 100)
"""The candidate counts reranked unless told otherwise."""

STAGE1_DEPTH = 100
"""Stage 1 alone ranks at least this many documents per query (Recall@100 needs them)."""

FAISS_FROM_DOCUMENTS = 20_000
"""From this corpus size on, stage 1 searches with faiss unless told otherwise: its exact
search is threaded and keeps only the best scores, where numpy would hold every query's full
row of scores."""

SearchIndex = Literal["auto", "numpy", "faiss"]
"""How stage 1 searches: ``"numpy"`` (a matrix product), ``"faiss"`` (``IndexFlatIP``) or
``"auto"`` (faiss from ``FAISS_FROM_DOCUMENTS`` documents on); exact either way."""

MIN_GRADE = -1000
"""The lowest relevance grade a qrels file may hold. A grade of 0 or below means judged not
relevant (trec_eval's rule: TREC's web track grades junk pages -2)."""

MAX_GRADE = 1000
"""The highest relevance grade a qrels file may hold. trec_eval counts the judgements of
every grade from 0 up to the highest of each query (a grade of 10**9 takes 8 GB and half a
minute), and reads grades as 32-bit integers (2**32 - 2 would read as -2)."""
