"""A busy machine on demand: CPU-bound processes of the benchmark's own, to time engines while
other work shares the cores (``bench_peers --background-load N``, ``bench_busy``).

Each process is a Python loop that does nothing but count: no files, no network. They start
in a session of their own, so Ctrl-C at a terminal reaches only the benchmark, which stops
them on its way out (``background_load`` stops them on any exit, an error or Ctrl-C
included). Should the benchmark be killed outright, each loop sees within a few milliseconds
that its parent is gone and ends itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# Counts in slices of about 5 ms, and ends as soon as the process that started it is gone
# (it is then adopted by another process, and its parent id changes).
_BUSY_LOOP = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextmanager
def background_load(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` busy processes while the block runs (none for 0), stopped when it ends."""
    if count < 0:
        raise ValueError(f"the number of busy processes must be 0 or more, not {count}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _BUSY_LOOP, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def exit_on_sigterm() -> None:
    """Make SIGTERM end the program as Ctrl-C does, through every ``finally`` (Python's
    default would end it at once, leaving the busy processes to notice on their own)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def running_processes() -> int:
    """How many processes are running or ready to run on the whole machine right now (the
    kernel's ``procs_running``, this one included), or -1 where it cannot be read."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1
