"""Internal: handing the C heap's free pages back to the system while a model is built."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc only). Packing frees a
    temporary beside each packed weight it keeps, and with one heap per loading thread those
    holes would otherwise add about 200 MiB to the load's peak on the 0.6B shape."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim
