"""The one cache of shared objects (``qwen3_core.sharing.SharedCache``) that loaded models,
checkpoints, tokenizers and OpenVINO's compiled models are kept in: one build per key however
many threads ask at once, an entry gone with its last holder, and a kept object that is no
longer valid built anew."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from qwen3_core.sharing import SharedCache


class Thing:
    """A weak-referenceable value."""

    def __init__(self, key: str, valid: bool = True) -> None:
        self.key, self.valid = key, valid


def test_threads_asking_for_one_key_share_one_build() -> None:
    cache: SharedCache[str, Thing] = SharedCache()
    builds: list[str] = []
    start = threading.Barrier(8)

    def build(key: str) -> Thing:
        builds.append(key)
        time.sleep(0.05)  # long enough for the other threads to ask meanwhile
        return Thing(key)

    def ask(index: int) -> Thing:
        key = "a" if index % 2 else "b"
        start.wait()
        return cache.get_or_build(key, lambda: build(key))

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(8)))
    assert sorted(builds) == ["a", "b"]
    assert len({id(thing) for thing in got}) == 2
    assert all(thing.key == ("a" if i % 2 else "b") for i, thing in enumerate(got))


def test_an_entry_lives_while_someone_holds_it() -> None:
    cache: SharedCache[str, Thing] = SharedCache()
    held = cache.get_or_build("k", lambda: Thing("k"))
    assert cache.get("k") is held and cache.get_or_build("k", lambda: Thing("other")) is held
    del held
    gc.collect()
    assert cache.get("k") is None  # nothing keeps an object nobody holds


def test_an_object_no_longer_valid_is_built_anew() -> None:
    cache: SharedCache[str, Thing] = SharedCache(lambda thing: thing.valid)
    old = cache.get_or_build("k", lambda: Thing("old"))
    old.valid = False  # as a model whose folder's files were rewritten
    new = cache.get_or_build("k", lambda: Thing("new"))
    assert new is not old and new.key == "new" and old.key == "old"  # the holder keeps its own
    assert cache.get("k") is new


def test_a_failed_build_keeps_nothing_and_the_next_ask_builds_again() -> None:
    cache: SharedCache[str, Thing] = SharedCache()

    def failing() -> Thing:
        raise ValueError("the files changed while they were read")

    with pytest.raises(ValueError, match="changed while"):
        cache.get_or_build("k", failing)
    assert cache.get("k") is None
    assert cache.get_or_build("k", lambda: Thing("k")).key == "k"
