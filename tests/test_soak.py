"""Soak test (``slow``: deselected by default; run with ``pytest -m slow tests/test_soak.py -s``):
20,000 mixed-length items, from empty strings and emoji to 200 kB texts, embedded and
reranked by the real tiny models in 40 calls of 500, then embedded in one call of 20,000.
The resident memory must stay flat from the first quarter of the calls to the last, and
the single large call must not need more than a bounded extra; every result is finite.

torch allocates outside Python's allocator, so the process's resident set size (RSS) is
measured, not tracemalloc. The measured numbers are in docs/reliability.md."""

from __future__ import annotations

import random
import resource
import time

import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.testing import ModelPaths
from tests.options import CPU

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow

ITEMS = 20_000
CHUNK = 500
MiB = 2**20
# Allowed RSS growth from the first quarter of the calls to the last: glibc keeps freed
# arenas around, so a little drift is normal; a leak of even 1 kB per item would be 20 MB.
MAX_DRIFT_MIB = 48
# The one call of 20,000 against the chunked calls' peak: its own token ids and results.
MAX_ONE_CALL_EXTRA_MIB = 256

_ODD = ["", " ", "\n\n", "🙂" * 40, "北京" * 300, "<|im_end|>", "\x00\x01", "e\u0301" * 100]


def mixed_items(n: int, words: list[str], seed: int = 0) -> list[str]:
    """Mostly short texts, some long ones, a few far over max_length, some odd ones."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        r = rng.random()
        if r < 0.02:
            items.append(rng.choice(_ODD))
            continue
        if r < 0.62:
            length = rng.randint(1, 30)
        elif r < 0.92:
            length = rng.randint(30, 200)
        elif r < 0.998:
            length = rng.randint(200, 1200)
        else:
            length = 30_000  # ~200 kB: cut to max_length
        items.append(f"{i} " + " ".join(rng.choice(words) for _ in range(length)))
    return items


def rss_mib() -> float:
    rss: int = psutil.Process().memory_info().rss
    return rss / MiB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_soak_twenty_thousand_items_in_constant_memory(
    test_models: ModelPaths, corpus: list[str], queries: list[str]
) -> None:
    words = [*" ".join(corpus).split(), "gravity", "北京", "🙂", "the", "of", "and", "mass"]
    items = mixed_items(ITEMS, words)
    embedder = Qwen3Embedder(test_models.embedding, backend=CPU)
    reranker = Qwen3Reranker(test_models.reranker, backend=CPU)
    start = time.perf_counter()
    samples: list[float] = []
    for k, first in enumerate(range(0, ITEMS, CHUNK)):
        chunk = items[first : first + CHUNK]
        vectors = embedder.embed_documents(chunk)
        assert vectors.shape == (len(chunk), embedder.dimension)
        assert np.isfinite(vectors).all()
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        scores = reranker.score(queries[k % 2], chunk)
        assert scores.shape == (len(chunk),) and np.isfinite(scores).all()
        assert ((scores >= 0) & (scores <= 1)).all()
        samples.append(rss_mib())
    chunked_seconds = time.perf_counter() - start
    quarter = len(samples) // 4
    drift = max(samples[-quarter:]) - max(samples[:quarter])
    chunked_peak = peak_rss_mib()

    start = time.perf_counter()
    everything = embedder.embed_documents(items)
    one_call_seconds = time.perf_counter() - start
    assert everything.shape == (ITEMS, embedder.dimension) and np.isfinite(everything).all()
    one_call_peak = peak_rss_mib()

    print(
        f"\nsoak: {ITEMS} items, {len(samples)} calls of {CHUNK} (embed + rerank) in "
        f"{chunked_seconds:.0f} s; RSS first quarter max {max(samples[:quarter]):.0f} MiB, "
        f"last quarter max {max(samples[-quarter:]):.0f} MiB (drift {drift:+.1f} MiB); "
        f"peak RSS {chunked_peak:.0f} MiB; one embed call of {ITEMS} in "
        f"{one_call_seconds:.0f} s, peak RSS then {one_call_peak:.0f} MiB"
    )
    assert drift < MAX_DRIFT_MIB, samples
    assert one_call_peak - chunked_peak < MAX_ONE_CALL_EXTRA_MIB
