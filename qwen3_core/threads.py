"""Internal: how torch's CPU threads wait for work, chosen only before torch loads.

torch's CPU kernels run on an OpenMP thread team (GNU libgomp in the Linux wheels). Between
two parallel regions its threads spin, by default, for a while before they sleep. On a
machine whose cores are shared (a web server, a vector store, other workers), a spinning
thread holds a core that the thread it waits for, or the other work, needs: on two cores
with two busy processes beside it, a reranking call of two documents took several times as
long as with sleeping threads, and never less (docs/performance.md, "A busy machine").

libgomp reads ``OMP_WAIT_POLICY`` once, when it loads with torch; nothing changes it
afterwards. So ``import qwen3_core`` sets it when torch is not loaded yet (the ``qwen3-rag``
command and every program that imports qwen3-rag before torch); a process that imported torch
first keeps torch's default.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"
SPIN_COUNT = "GOMP_SPINCOUNT"


def wait_passively_unless_set() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process if torch is not loaded yet and the
    user has chosen neither a policy nor a spin count (``GOMP_SPINCOUNT``); returns whether
    it was set. Child processes inherit it."""
    if "torch" in sys.modules or WAIT_POLICY in os.environ or SPIN_COUNT in os.environ:
        return False
    os.environ[WAIT_POLICY] = "PASSIVE"
    return True
