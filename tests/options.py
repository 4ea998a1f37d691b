"""The backend options the tests run on: the tiny models on CPU, in float32."""

from __future__ import annotations

from typing import Any

from qwen3_core import TransformersOptions

CPU = TransformersOptions(device="cpu")
"""The transformers backend on CPU (float32, the CPU's default dtype)."""


def on_cpu(*, reranker: bool = False, **settings: Any) -> TransformersOptions:
    """What a CPU engine made with these options reports as its ``options``: the device, the
    dtype (float32 unless given), qwen3-rag's decoder, in float32 oneDNN's linears, torch's
    thread count adapted to the other processes' load, and for a reranker the shared query
    prefix (on by default on CPU)."""
    settings.setdefault("cpu_threads", "adaptive")
    if reranker:
        settings.setdefault("share_prefix", True)
    dtype = settings.pop("dtype", "float32")
    linear = "onednn" if dtype == "float32" and "quantization" not in settings else None
    return TransformersOptions(
        device="cpu", dtype=dtype, decoder="qwen3-rag", cpu_linear=linear, **settings
    )
