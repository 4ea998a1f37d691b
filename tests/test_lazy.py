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


def test_failed_factory_is_retried() -> None:
    attempts = iter([RuntimeError("first"), "engine"])

    def factory() -> str:
        value = next(attempts)
        if isinstance(value, Exception):
            raise value
        return value

    lazy: LazyEngine[str] = LazyEngine(factory)
    with pytest.raises(RuntimeError, match="first"):
        lazy.get()
    assert lazy.get() == "engine"


def test_ready_engine() -> None:
    engine = object()
    lazy = LazyEngine.ready(engine)
    assert lazy.loaded and lazy.get() is engine
