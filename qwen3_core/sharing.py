"""Internal: objects shared by key while anyone holds them (loaded models, checkpoints,
tokenizers), each built at most once at a time per key."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _always(value: object) -> bool:
    return True


class SharedCache(Generic[K, V]):
    """A weak-valued map from explicit keys to shared objects: an entry lives while someone
    holds its object, and threads asking for one key at the same moment wait for one build.

    ``still_valid`` (by default always true) decides whether a kept object may be handed out
    again, for example while the files it was read from are unchanged; one that is not is
    built anew and replaces it (holders of the old one keep theirs).
    """

    def __init__(self, still_valid: Callable[[V], bool] = _always) -> None:
        self._values: weakref.WeakValueDictionary[K, V] = weakref.WeakValueDictionary()
        self._still_valid = still_valid
        self._lock = threading.Lock()
        self._key_locks: dict[K, threading.Lock] = {}

    def get(self, key: K) -> V | None:
        """The object kept under ``key`` if it is still valid, else None."""
        with self._lock:
            hit = self._values.get(key)
        return hit if hit is not None and self._still_valid(hit) else None

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` (too); returns it."""
        with self._lock:
            self._values[key] = value
        return value

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        """The object under ``key``, built by ``build()`` when none is kept or the kept one is
        no longer valid. One build per key at a time: a second thread waits for the first
        one's object rather than build its own. A build may itself ask another cache (or
        this one under another key), as long as keys are always taken in one order."""
        hit = self.get(key)
        if hit is not None:
            return hit
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            hit = self.get(key)
            if hit is not None:
                return hit
            return self.put(key, build())
