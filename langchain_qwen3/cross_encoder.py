"""Internal (import its public names from ``langchain_qwen3``): ``Qwen3CrossEncoder``:
Qwen3-Reranker behind LangChain's cross-encoder interface, for ``CrossEncoderReranker`` and
anything else that takes a ``BaseCrossEncoder``."""

from __future__ import annotations

from langchain_core.cross_encoders import BaseCrossEncoder

from qwen3_core.adapter_settings import RerankerSettings
from qwen3_core.validation import check_pairs


class Qwen3CrossEncoder(RerankerSettings, BaseCrossEncoder):
    """Scores (query, document) pairs with Qwen3-Reranker: P(yes) in [0, 1] per pair.

    ```python
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_qwen3 import Qwen3CrossEncoder

    compressor = CrossEncoderReranker(
        model=Qwen3CrossEncoder(model="Qwen/Qwen3-Reranker-0.6B"), top_n=3
    )
    ```

    ``CrossEncoderReranker`` returns the documents without scores, sorted by P(yes) (so
    documents whose P(yes) rounds to 1.0 stay in input order); ``Qwen3Rerank`` sorts by the
    log-odds and gives ``metadata["relevance_score"]`` and ``metadata["relevance_logit"]``,
    a threshold and async.

    ``engine=Qwen3Reranker(...)`` uses a ready engine, as ``Qwen3Rerank`` does.
    """

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """P(yes) of each (query, document) pair, in input order."""
        pairs = check_pairs("text_pairs", text_pairs)  # checked before anything is loaded
        if not pairs:
            return []
        scores: list[float] = self.engine.score_pairs(pairs, **self.call_settings()).tolist()
        return scores
