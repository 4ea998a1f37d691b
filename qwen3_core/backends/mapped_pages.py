"""Internal: handing back the pages of a file that a library maps and has finished reading.

OpenVINO's CPU plugin maps a converted model's weights file and, as it compiles, copies most
weights into packed layouts of its own. Every page it read stays in the process's resident
set beside those copies: the 0.6B shape held 2.3 GB of the file's pages beside 1.4-1.7 GB of
packed weights. ``dropped_pages`` tells the kernel, every few milliseconds while the block
runs and once at its end, that the process no longer needs the resident pages of that file's
shared read-only mappings (``madvise(MADV_DONTNEED)``). For such a mapping that loses
nothing: a page read again is mapped again from the file (or the page cache), so only the
weights the plugin keeps reading from the file (the token table's rows, some projections)
come back, and they are then the only copy.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

INTERVAL_S = 0.05
"""How often the pages are handed back while the block runs."""

Madvise = Callable[[int, int, int], int]


@contextmanager
def dropped_pages(path: Path) -> Iterator[None]:
    """While the block runs, and once as it ends, hand back this process's resident pages of
    ``path``'s shared read-only mappings. Does nothing where that cannot be done (not Linux,
    or the file cannot be read)."""
    madvise = _madvise()
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    if madvise is None or stat is None:
        yield
        return
    identity = (os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino)
    stop = threading.Event()

    def keep_dropping() -> None:
        while not stop.wait(INTERVAL_S):
            drop_pages(identity, madvise)

    worker = threading.Thread(target=keep_dropping, name="qwen3-rag dropped pages", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
        drop_pages(identity, madvise)


def drop_pages(identity: tuple[int, int, int], madvise: Madvise) -> int:
    """Hand back the resident pages of the shared read-only mappings of the file
    ``identity`` (device major, minor, inode); returns how many mappings there were."""
    dropped = 0
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        span, permissions, _, device, inode = fields[:5]
        # Only shared mappings that cannot be written: a private one may hold pages written
        # in this process, which would be lost.
        if permissions[1] != "-" or permissions[3] != "s" or int(inode) != identity[2]:
            continue
        major, minor = (int(part, 16) for part in device.split(":"))
        if (major, minor) != identity[:2]:
            continue
        start, end = (int(part, 16) for part in span.split("-"))
        madvise(start, end - start, mmap.MADV_DONTNEED)
        dropped += 1
    return dropped


@functools.cache
def _madvise() -> Madvise | None:
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    advise: Madvise = function
    return advise
