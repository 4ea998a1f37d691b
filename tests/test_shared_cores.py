"""torch's thread count on cores that other processes keep busy (``cpu_threads``).

Real busy processes, pinned to this process's cores, and the real engines on the tiny models:
each forward pass records the thread count it ran with (a forward pre-hook on the model)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from qwen3_core import Qwen3Embedder, Qwen3Reranker, Qwen3VLEmbedder, TransformersOptions
from qwen3_core.kernels.shared_cores import SharedCores, shared_cores
from qwen3_core.testing import ModelPaths
from qwen3_core.testing.vl_models import VLModelPaths, build_vl_test_models
from tests.options import CPU

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cores = pytest.mark.skipif(
    len(CPUS) < 2 or not os.path.exists("/proc/stat"),
    reason="needs Linux's /proc/stat and two cores to share",
)

# Counts on one core until its parent is gone.
_BUSY = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Every core of this process kept busy by another process, for 0.6 s before the test
    and through it: the next reading covers only the busy time."""
    loops = [subprocess.Popen([sys.executable, "-c", _BUSY, str(cpu)]) for cpu in CPUS]
    try:
        shared_cores().others()  # a reading now: the next one covers the busy time only
        time.sleep(0.6)
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def _threads_per_pass(model: torch.nn.Module, call: Any) -> list[int]:
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        call()
    finally:
        handle.remove()
    assert seen, "no forward pass ran"
    return seen


@needs_two_cores
def test_busy_cores_are_counted_as_other_processes_time(busy_cores: None) -> None:
    reader = SharedCores()
    time.sleep(0.5)
    assert reader.others() > len(CPUS) - 0.5
    assert reader.threads(len(CPUS)) == 1


@needs_two_cores
def test_this_processes_own_work_is_not_counted_against_it() -> None:
    """Busy on every core itself, it counts its own time as its own: what it counts for the
    others is at most what its own work left of the cores (other processes' work, where any
    shares the machine, only adds to the count within that bound)."""
    reader = SharedCores()
    torch.set_num_threads(len(CPUS))
    matrix = torch.randn(384, 384)
    before, start = os.times(), time.monotonic()
    while time.monotonic() - start < 0.6:
        matrix @ matrix
    after = os.times()
    others = reader.others()
    own = (after.user + after.system - before.user - before.system) / (time.monotonic() - start)
    assert own > 0.3, "the matrix products took no CPU time: nothing was measured"
    assert others <= len(CPUS) - own + 0.25


def _engine(kind: str, test_models: ModelPaths, options: TransformersOptions) -> Any:
    if kind == "embedding":
        return Qwen3Embedder(test_models.embedding, backend=options)
    return Qwen3Reranker(test_models.reranker, backend=options)


def _call(engine: Any) -> Any:
    documents = ["Beijing is the capital of China. " * 8, "Gravity pulls masses together."]
    if isinstance(engine, Qwen3Embedder):
        return engine.embed_documents(documents)
    return engine.score("What is the capital of China?", documents)


@needs_two_cores
@pytest.mark.parametrize("kind", ["embedding", "reranker"])
def test_a_pass_beside_busy_cores_runs_on_one_thread_with_the_same_result(
    kind: str, test_models: ModelPaths, busy_cores: None
) -> None:
    torch.set_num_threads(len(CPUS))
    results: dict[str, Any] = {}
    threads: dict[str, list[int]] = {}
    for choice in ("adaptive", "torch"):
        engine = _engine(kind, test_models, replace(CPU, cpu_threads=choice))
        assert isinstance(engine.options, TransformersOptions)
        assert engine.options.cpu_threads == choice

        def call(engine: Any = engine, choice: str = choice) -> None:
            results[choice] = _call(engine)

        threads[choice] = _threads_per_pass(engine.loaded_model, call)
        assert torch.get_num_threads() == len(CPUS)  # put back after the call
    assert set(threads["adaptive"]) == {1}
    assert set(threads["torch"]) == {len(CPUS)}
    np.testing.assert_allclose(results["adaptive"], results["torch"], rtol=0, atol=1e-6)


@needs_two_cores
def test_a_thread_starting_during_a_lowered_pass_gets_torchs_count(
    test_models: ModelPaths, busy_cores: None
) -> None:
    """torch gives a thread that first runs its kernels the process's count: a pass lowers its
    own thread's count only, so a thread that starts meanwhile still gets torch's."""
    torch.set_num_threads(len(CPUS))
    engine = Qwen3Embedder(test_models.embedding, backend=CPU)
    seen: list[tuple[int, int]] = []

    def during_the_pass(*_: Any) -> None:
        other: list[int] = []
        thread = threading.Thread(target=lambda: other.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        seen.append((torch.get_num_threads(), other[0]))

    handle = engine.loaded_model.register_forward_pre_hook(during_the_pass)
    try:
        engine.embed_documents(["Beijing is the capital of China."])
    finally:
        handle.remove()
    assert seen == [(1, len(CPUS))]


@needs_two_cores
def test_the_qwen3_vl_engines_adapt_alike(busy_cores: None) -> None:
    vl_models: VLModelPaths = build_vl_test_models()
    torch.set_num_threads(len(CPUS))
    engine = Qwen3VLEmbedder(vl_models.embedding, backend=CPU)
    assert isinstance(engine.options, TransformersOptions)
    assert engine.options.cpu_threads == "adaptive"
    seen = _threads_per_pass(engine.loaded_model, lambda: engine.embed_documents(["a red square"]))
    assert set(seen) == {1}
    assert torch.get_num_threads() == len(CPUS)


def test_cpu_threads_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown cpu_threads 'auto'"):
        TransformersOptions(cpu_threads="auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cpu_threads='torch' applies on CPU only"):
        TransformersOptions(device="cuda", cpu_threads="torch")


def test_the_default_on_cpu_is_adaptive(embedder: Qwen3Embedder) -> None:
    assert isinstance(embedder.options, TransformersOptions)
    assert embedder.options.cpu_threads == "adaptive"
