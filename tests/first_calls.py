"""Run as a program (``python tests/first_calls.py EMBEDDING RERANKER``) by
test_first_calls.py, in a fresh process: the engines' first calls in the process against the
same calls made again.

The reranker goes first: its first forward pass (a 66-token prompt prefix, 2,112 rotary
angles) is the first multi-threaded cos and sin of the process. Prints one JSON line: the
largest difference of each engine's first result from its second."""

from __future__ import annotations

import json
import sys

import numpy as np

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions

TEXTS = ["Gravity attracts bodies with mass.", "北京是中国的首都。", "Python is a language."]
QUERY = "what is gravity"
CPU = TransformersOptions(device="cpu")  # run as a program: tests/options.py is not importable


def main(embedding: str, reranker: str) -> dict[str, float]:
    rerank, embed = Qwen3Reranker(reranker, backend=CPU), Qwen3Embedder(embedding, backend=CPU)
    scores, vectors = rerank.score(QUERY, TEXTS), embed.embed_documents(TEXTS)
    return {
        "scores": float(np.abs(scores - rerank.score(QUERY, TEXTS)).max()),
        "vectors": float(np.abs(vectors - embed.embed_documents(TEXTS)).max()),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
