"""Run as a program (``python tests/concurrent_first_use.py EMBEDDING RERANKER``) by
test_concurrency.py, in a fresh process: nothing but the adapters imported, no model loaded.

8 threads, released together, each build a LangChain or a LlamaIndex adapter pair on one of
four spellings of each model folder and use it at once. Prints one JSON line: the errors,
how many engines were built, how many distinct copies of the weights they run on, and
whether all threads got the same results."""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from langchain_qwen3 import Qwen3Embeddings
from langchain_qwen3 import Qwen3Rerank as LangChainRerank
from llamaindex_qwen3 import Qwen3Embedding
from llamaindex_qwen3 import Qwen3Rerank as LlamaIndexRerank
from qwen3_core import TransformersOptions

THREADS = 8
TEXTS = ["Gravity attracts bodies with mass.", "北京是中国的首都。", "Python is a language."]
QUERY = "what is gravity"
CPU = TransformersOptions(device="cpu")  # run as a program: tests/options.py is not importable


def spellings(folder: Path) -> list[str]:
    """Names of one folder that differ as strings: each is its own cache key and lock."""
    return [str(folder), f"{folder}/", os.path.relpath(folder), f"{folder}/./"]


def main(embedding: Path, reranker: Path) -> dict[str, Any]:
    names, reranker_names = spellings(embedding), spellings(reranker)
    barrier = threading.Barrier(THREADS)

    def build(index: int) -> tuple[Any, Any, list[Any], list[float]]:
        barrier.wait()
        name, reranker_name = names[index % 4], reranker_names[index % 4]
        if index % 2:  # the reranker first: both models load at the same moment
            emb: Any = Qwen3Embeddings(model=name, backend=CPU)
            rerank: Any = LangChainRerank(model=reranker_name, backend=CPU, top_n=None)
            docs = [Document(page_content=t) for t in TEXTS]
            scores = [d.metadata["relevance_score"] for d in rerank.compress_documents(docs, QUERY)]
            vectors = emb.embed_documents(TEXTS)
        else:
            emb = Qwen3Embedding(model=name, backend=CPU)
            rerank = LlamaIndexRerank(model=reranker_name, backend=CPU, top_n=len(TEXTS))
            vectors = emb.get_text_embedding_batch(TEXTS)
            nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in TEXTS]
            scores = [n.score for n in rerank.postprocess_nodes(nodes, query_str=QUERY)]
        return emb.engine, rerank.engine, vectors, sorted(scores)

    errors: list[str] = []
    built: list[tuple[Any, Any, list[Any], list[float]]] = []

    def guarded(index: int) -> None:
        try:
            built.append(build(index))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(guarded, range(THREADS)))
    engines = {id(e) for e, *_ in built} | {id(r) for _, r, *_ in built}
    return {
        "errors": errors,
        "engines": len(engines),
        "embedding_weights": len({id(e.loaded_model) for e, *_ in built}),
        "reranker_weights": len({id(r.loaded_model) for _, r, *_ in built}),
        "same_vectors": all(b[2] == built[0][2] for b in built),
        "same_scores": all(b[3] == built[0][3] for b in built),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
