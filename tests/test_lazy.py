"""LazyEngine: built once on first use, even under concurrent first calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from qwen3_core.lazy import LazyEngine


def test_factory_runs_once_under_concurrent_first_use() -> None:
    calls = []

    def factory() -> object:
        calls.append(threading.get_ident())
        time.sleep(0.05)  # widen the race window
        return object()

    lazy: LazyEngine[object] = LazyEngine(factory)
    assert not lazy.loaded
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: lazy.get(), range(8)))
    assert len(calls) == 1 and all(v is values[0] for v in values) and lazy.loaded


@pytest.mark.parametrize("error", [RuntimeError("first"), KeyboardInterrupt("first")])
def test_failed_factory_is_retried(error: BaseException) -> None:
    """A load that failed, or was interrupted (Ctrl-C while the weights load), leaves the
    lock free and nothing cached: the next use builds the engine."""
    attempts: list[BaseException | str] = [error, "engine"]

    def factory() -> str:
        value = attempts.pop(0)
        if isinstance(value, BaseException):
            raise value
        return value

    lazy: LazyEngine[str] = LazyEngine(factory)
    with pytest.raises(type(error), match="first"):
        lazy.get()
    assert not lazy.loaded
    assert lazy.get() == "engine" and lazy.loaded


def test_ready_engine() -> None:
    engine = object()
    lazy = LazyEngine.ready(engine)
    assert lazy.loaded and lazy.get() is engine
