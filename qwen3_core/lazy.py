"""Internal: engines built on first use: adapters must not touch the network or load weights
when they are constructed (LangChain's unit-test template runs with sockets disabled)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyEngine(Generic[T]):
    """Calls ``factory`` once, on the first ``get()``, even when many threads ask at once; a
    factory that raised is tried again on the next ``get()``."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, value: T) -> LazyEngine[T]:
        """An already-built engine."""
        lazy: LazyEngine[T] = cls(lambda: value)
        lazy._value = value
        return lazy

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
                value = self._value
        return value

    async def aget(self) -> T:
        """``get`` for async code: a first build (which loads weights) runs in a worker thread,
        so the event loop keeps serving meanwhile."""
        value = self._value
        return value if value is not None else await asyncio.to_thread(self.get)
