"""The opt-in int8 CPU path: the decoder's linear layers in int8 on fbgemm's dynamic kernel
(VNNI dot products). Faster, not exact: see docs/performance.md."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from qwen3_core.kernels.decoder_linears import swap_decoder_linears


def _has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (int8 dot products into int32, no int16 saturation)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = set(handle.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni"})


class Int8Linear(torch.nn.Module):
    """A ``nn.Linear`` with int8 weights (symmetric, one scale per output row) whose input is
    quantized to uint8 on each call (one scale per call) by fbgemm's dynamic int8 kernel.

    The torch ops themselves, not ``torch.ao.quantization.quantize_dynamic``: that helper
    keeps a 7-bit activation range (``reduce_range=True``, against int16 saturation on CPUs
    without VNNI) and one weight scale per matrix, about 4x the error per layer of this
    form on the Qwen3-0.6B shape. With VNNI the full 8-bit range is safe and is used.
    """

    def __init__(self, linear: torch.nn.Linear, *, reduce_range: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.reduce_range = reduce_range
        weight = linear.weight.detach().float()
        # The largest magnitude per row, in one pass (no temporary of abs values).
        largest = torch.linalg.vector_norm(weight, float("inf"), dim=1)
        scales = (largest / 127).clamp(min=1e-12).double()
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():
            # torch 2.13 marks its quantized tensor types deprecated (pytorch issue 184982)
            # but has no other int8 CPU GEMM with dynamic activations; only that warning.
            warnings.filterwarnings(
                "ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel"
            )
            quantized = torch.quantize_per_channel(
                weight, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8
            )
        self._packed = torch.ops.quantized.linear_prepack(quantized, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.quantized.linear_dynamic(
            x, self._packed, reduce_range=self.reduce_range
        )
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def check_int8_supported() -> None:
    """Raise ValueError unless this torch can run ``Int8Linear`` (an x86 CPU, fbgemm)."""
    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm"):
        raise ValueError(
            f"quantization='int8' needs torch's x86/fbgemm int8 kernels; this torch's "
            f"quantized engine is {engine!r}"
        )


def int8_linears() -> Callable[[torch.nn.Linear], torch.nn.Module]:
    """What turns a float32 ``nn.Linear`` into an ``Int8Linear`` on this CPU."""
    check_int8_supported()
    reduce_range = not _has_vnni()
    return lambda linear: Int8Linear(linear, reduce_range=reduce_range)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every ``nn.Linear`` of the decoder layers for an ``Int8Linear``, in place. The
    token embeddings and norms stay float32."""
    return swap_decoder_linears(model, int8_linears())
