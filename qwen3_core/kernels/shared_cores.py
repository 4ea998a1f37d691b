"""Internal: how many of torch's CPU threads a forward pass uses when other work shares the
cores (``TransformersOptions(cpu_threads="adaptive")``, the default on CPU).

torch's threads work in lockstep: every parallel region ends when its slowest thread ends.
On cores that other processes keep busy, one of torch's threads waits for a core, and the
others wait for it: with torch's spinning wait (a program that loaded torch before
qwen3-rag) the 0.6B embedding ran 6x slower beside one busy process on two cores than on
the quiet machine; on one thread it ran 1.8x slower (docs/performance.md, "A busy machine").

So before each forward pass the engine reads how much CPU time other processes took on this
process's cores since the last pass (``/proc/stat`` less this process's own time) and runs
with torch's thread count less the cores they kept busy, at least one. The count is set
around the pass and put back after it; the thread count does not change results (the
kernels split rows, not the sums). Where ``/proc/stat`` cannot be read (not Linux), torch's
count is used as set.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from qwen3_core.backend_options import CpuThreads

_STAT = "/proc/stat"
_MIN_INTERVAL_S = 0.2
"""Shorter intervals keep the last count: ``/proc/stat`` counts in ticks of 10 ms a core."""


@dataclass(frozen=True)
class _Sample:
    wall: float
    busy: float
    """CPU seconds every process spent on this process's cores (``/proc/stat``)."""
    own: float
    """CPU seconds this process spent, all its threads."""


def _cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _sample(cpus: set[int]) -> _Sample | None:
    """Now, or None where ``/proc/stat`` cannot be read (or reads as something else)."""
    ticks = 0
    try:
        with open(_STAT) as stat:
            lines = stat.read().splitlines()
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
                continue
            # user nice system idle iowait irq softirq steal: all but idle and iowait are
            # cores taken, steal (another virtual machine's time) included.
            fields = [int(value) for value in rest.split()[:8]]
            fields += [0] * (8 - len(fields))
            ticks += sum(fields) - fields[3] - fields[4]
    except (OSError, ValueError):
        return None
    times = os.times()
    return _Sample(
        wall=time.monotonic(),
        busy=ticks / os.sysconf("SC_CLK_TCK"),
        own=times.user + times.system,
    )


class SharedCores:
    """What other processes took of this process's cores, measured between forward passes.
    One per process: every engine's passes count as this process's own time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._cpus = _cpus()
        self._pid = os.getpid()
        self._last = _sample(self._cpus)
        self._others = 0.0

    def others(self) -> float:
        """Cores other processes kept busy since the last reading at least 0.2 s ago (the
        last figure for shorter intervals); 0.0 where it cannot be read."""
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: its own time starts again
                self._start()
            last = self._last
            if last is None or time.monotonic() - last.wall < _MIN_INTERVAL_S:
                return self._others
            now = _sample(self._cpus)
            if now is None:
                return self._others
            taken = (now.busy - last.busy) - (now.own - last.own)
            self._others = max(0.0, taken / (now.wall - last.wall))
            self._last = now
            return self._others

    def threads(self, wanted: int) -> int:
        """Of ``wanted`` threads, as many as the cores others left free (at least one)."""
        free = len(self._cpus) - self.others()
        return max(1, min(wanted, math.floor(free + 0.5)))


_shared: SharedCores | None = None
_shared_lock = threading.Lock()


def shared_cores() -> SharedCores:
    """The process's one reader, started at the first engine load."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedCores()
        return _shared


class _ProcessCount:
    """torch's count for threads that start running its kernels, kept as the user set it.

    ``torch.set_num_threads`` sets the calling thread's OpenMP and MKL counts and also the
    process-wide count that a thread takes when it first runs torch's kernels: a thread
    starting during a lowered pass would keep the lowered count. So once a pass has lowered
    its own thread's count, a thread of its own sets the process-wide count back (which sets
    only that thread's counts besides)."""

    def __init__(self) -> None:
        self._asked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.pid = os.getpid()  # a forked child has the object, not the thread
        threading.Thread(target=self._serve, name="qwen3-rag-threads", daemon=True).start()

    def _serve(self) -> None:
        while True:
            torch.set_num_threads(self._asked.get())
            self._done.put(None)

    def set(self, count: int) -> None:
        with self._lock:
            self._asked.put(count)
            self._done.get()


_process_count: _ProcessCount | None = None


def _lower(threads: int, wanted: int) -> None:
    """This thread's count lowered to ``threads``; every other thread's kept."""
    global _process_count
    torch.set_num_threads(threads)
    with _shared_lock:
        if _process_count is None or _process_count.pid != os.getpid():
            _process_count = _ProcessCount()
    _process_count.set(wanted)


def resolve_cpu_threads(choice: CpuThreads | None, device: torch.device) -> CpuThreads | None:
    """What runs for ``TransformersOptions.cpu_threads``: ``"adaptive"`` unless chosen, on
    CPU only."""
    return (choice or "adaptive") if device.type == "cpu" else None


@contextmanager
def forward_threads(choice: CpuThreads | None) -> Iterator[int]:
    """torch's thread count for one forward pass: with ``"adaptive"``, lowered for the
    cores other processes keep busy and put back after the pass; otherwise torch's own."""
    wanted = torch.get_num_threads()  # also starts torch's count in this thread
    threads = shared_cores().threads(wanted) if choice == "adaptive" else wanted
    if threads == wanted:
        yield threads
        return
    _lower(threads, wanted)
    try:
        yield threads
    finally:
        torch.set_num_threads(wanted)
