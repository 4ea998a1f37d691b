"""Internal: torch's vector math set up on one thread before a model's first forward pass.

torch's x86 CPU wheels evaluate several float functions (``cos``, ``sin``, ``exp``, ``erf``,
...) with MKL's vector math library, each thread of the op on its own chunk of 2048 elements.
The first call of such a function in a process, when it runs on several threads, sometimes
returns values off by up to 1.5e-4 on one chunk, and raises nothing; every later call is
exact. The rotary tables of a decoder's first forward pass are such a call (a 66-token
prompt has 2,112 angles): in more than half of the fresh processes tried, the first
reranker score after loading came out up to 2e-4 off (tests/test_first_calls.py).

Calling each function once on a few elements, which runs on one thread, sets the library up;
after that, calls on any number of threads are exact.
"""

from __future__ import annotations

import threading

import torch

_FUNCTIONS = (torch.cos, torch.sin, torch.exp, torch.erf)
"""cos and sin: the decoders' rotary tables. exp and erf: seen to fail in the same way."""


_lock = threading.Lock()
_prepared = False


def prepare_vector_math() -> None:
    """Call each function of ``_FUNCTIONS`` once, on 8 float32 and 8 float64 elements (one
    chunk: one thread). The first call in a process does it, under a lock: two threads
    setting the library up at once would be the same fault. Later calls return at once."""
    global _prepared
    with _lock:
        if _prepared:
            return
        with torch.inference_mode():
            for dtype in (torch.float32, torch.float64):
                values = torch.linspace(0.5, 2.0, 8, dtype=dtype)
                for function in _FUNCTIONS:
                    function(values)
        _prepared = True
