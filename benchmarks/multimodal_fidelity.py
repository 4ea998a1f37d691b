"""The largest differences of Qwen3VLEmbedder and Qwen3VLReranker from the official formulas
(written out in tests/test_multimodal_engine.py) on the tiny Qwen3-VL models, float32, CPU:
``python -m benchmarks.multimodal_fidelity``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from qwen3_core import Qwen3VLEmbedder, Qwen3VLReranker, TransformersOptions
from qwen3_core.testing import build_vl_test_models
from tests import test_multimodal_engine as reference

INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


def main() -> None:
    models = build_vl_test_models()
    cpu = TransformersOptions(device="cpu")
    inputs = reference.make_inputs(Path(tempfile.mkdtemp()))
    embedder = Qwen3VLEmbedder(models.embedding, backend=cpu)
    batch = embedder.embed_documents(inputs)
    alone = np.stack([embedder.embed_documents([value])[0] for value in inputs])
    official = np.stack([reference.official_embedding(models.embedding, v) for v in inputs])
    print(
        f"embedder: {len(inputs)} inputs; max |diff| from the official vectors: in one batch "
        f"{np.abs(batch - official).max():.2e}, one at a time {np.abs(alone - official).max():.2e}"
    )
    reranker = Qwen3VLReranker(models.reranker, backend=cpu)
    documents = inputs[:4] + inputs[7:]
    worst, count = 0.0, 0
    for query in ("revenue chart for 2024", inputs[1], {"text": "q", "image": inputs[2]}):
        scores = reranker.score(query, documents)
        for document, score in zip(documents, scores, strict=True):
            expected = reference.official_score(models.reranker, query, document, INSTRUCTION)
            worst, count = max(worst, abs(float(score) - expected)), count + 1
        print(f"  P(yes) of one query's documents: {scores.min():.3f} to {scores.max():.3f}")
    print(f"reranker: {count} pairs; max |diff| of P(yes) from the official: {worst:.2e}")


if __name__ == "__main__":
    main()
