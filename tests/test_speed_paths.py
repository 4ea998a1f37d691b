"""The optimised paths give the plain path's results: shared query prefix, token budgets,
out-of-memory back-off."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
from qwen3_core.batching import OutOfMemoryBackoff, token_budget_batches
from qwen3_core.testing import ModelPaths
from tests.options import CPU, on_cpu


@pytest.fixture(scope="module")
def whole_prompts(test_models: ModelPaths) -> Qwen3Reranker:
    return Qwen3Reranker(
        test_models.reranker, backend=TransformersOptions(device="cpu", share_prefix=False)
    )


def _mixed_documents(corpus: list[str]) -> list[str]:
    return corpus + [d * 4 for d in corpus[:6]] + ["", "x"]


@pytest.mark.parametrize("max_batch_tokens", [None, 300])
def test_shared_prefix_equals_whole_prompts(
    test_models: ModelPaths,
    whole_prompts: Qwen3Reranker,
    corpus: list[str],
    queries: list[str],
    max_batch_tokens: int | None,
) -> None:
    shared = Qwen3Reranker(
        test_models.reranker,
        backend=TransformersOptions(device="cpu", max_batch_tokens=max_batch_tokens),
    )
    assert whole_prompts.options == on_cpu(share_prefix=False)
    assert shared.options == on_cpu(reranker=True, max_batch_tokens=max_batch_tokens)
    docs = _mixed_documents(corpus)
    for query in queries:
        np.testing.assert_allclose(
            shared.score(query, docs), whole_prompts.score(query, docs), atol=1e-5, rtol=0
        )
    # Several queries in one call are grouped by query; singletons take the whole path.
    pairs = [(queries[i % 2], d) for i, d in enumerate(docs)] + [("alone", "one document")]
    np.testing.assert_allclose(
        shared.score_pairs(pairs), whole_prompts.score_pairs(pairs), atol=1e-5, rtol=0
    )


def test_token_budget_batches_bound_padded_tokens() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=300).tolist()
    batches = token_budget_batches(lengths, max_batch_tokens=1000, max_batch_size=64)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(300))  # every input exactly once
    for batch in batches:
        padded = max(lengths[i] for i in batch) * len(batch)
        assert padded <= 1000 or len(batch) == 1
        assert len(batch) <= 64


def test_backoff_halves_until_the_batch_fits(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(batch) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch * 10

    backoff = OutOfMemoryBackoff()
    with caplog.at_level(logging.WARNING, logger="qwen3_core"):
        result = backoff.run(np.arange(10), run)
        again = backoff.run(np.arange(8), run)
    assert result.tolist() == [i * 10 for i in range(10)] and again.tolist() == [
        i * 10 for i in range(8)
    ]
    assert calls[:3] == [10, 5, 2]
    assert len([r for r in caplog.records if "out of memory" in r.getMessage()]) == 1


def test_backoff_gives_up_on_a_single_input() -> None:
    def run(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    with pytest.raises(MemoryError, match="does not fit in memory even alone"):
        OutOfMemoryBackoff().run(np.arange(4), run)


def test_other_errors_are_not_retried() -> None:
    calls = []

    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        OutOfMemoryBackoff().run(np.arange(4), run)
    assert calls == [1]


def test_engine_survives_allocation_failures(
    test_models: ModelPaths, corpus: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A real engine whose model fails to allocate on batches above 4 rows (as a GPU would
    under a too-large budget): the call still succeeds with the same results."""
    embedder = Qwen3Embedder(test_models.embedding, backend=CPU, dimensions=32)
    expected = embedder.embed_documents(corpus)

    def fails_on_large_batches(module: torch.nn.Module, args: object, kwargs: Any) -> None:
        if kwargs["input_ids"].shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    decoder = embedder.loaded_model.base_model
    handle = decoder.register_forward_pre_hook(fails_on_large_batches, with_kwargs=True)
    try:
        with caplog.at_level(logging.WARNING, logger="qwen3_core"):
            got = embedder.embed_documents(corpus)
    finally:
        handle.remove()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert any("halving" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(embedder.embed_documents(corpus), expected, atol=1e-5, rtol=0)
