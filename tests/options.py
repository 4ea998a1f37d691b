"""The backend options the tests run on: the tiny models on CPU, in float32."""

from __future__ import annotations

from qwen3_core import TransformersOptions

CPU = TransformersOptions(device="cpu")
"""The transformers backend on CPU (float32, the CPU's default dtype)."""
