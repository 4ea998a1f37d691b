"""The CPU float32 linear layers on oneDNN, with weights packed once at load.

torch's ``nn.Linear`` calls its BLAS (MKL in the CPU wheels), which on some x86 CPUs runs far
below the hardware's rate: on a 2-core AMD EPYC with AVX-512, ``torch.mm`` reaches 190-230 GFLOP/s
where oneDNN's packed float32 GEMM, also inside torch, reaches 440-510 (the two cores'
AVX-512 FMA peak). Same float32 arithmetic, only the summation order differs (scores agree
within 1e-5; tests/test_onednn_linear.py). ``QWEN3_RAG_CPU_LINEAR=torch`` keeps ``nn.Linear``.
"""

from __future__ import annotations

import logging
import os

import torch

from qwen3_core.kernels.decoder_linears import swap_decoder_linears

logger = logging.getLogger(__name__)

ENVIRONMENT_SWITCH = "QWEN3_RAG_CPU_LINEAR"
"""``onednn`` (the default) or ``torch``: which float32 linear kernel CPU models run."""


class OneDnnLinear(torch.nn.Module):
    """A float32 ``nn.Linear`` whose weight is held in oneDNN's blocked layout, ready for its
    GEMM; the plain weight is dropped, so memory stays one copy."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # No batch-size hint: measured, the layout it picks is as fast for 1..2048 rows.
        self._packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self._bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            x, self._packed, self._bias, "none", [], ""
        )
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN"


def onednn_linear_wanted() -> bool:
    """Whether CPU float32 models should swap in ``OneDnnLinear`` (the switch, and whether this
    torch has oneDNN at all)."""
    choice = os.environ.get(ENVIRONMENT_SWITCH, "onednn").strip().lower()
    if choice not in ("onednn", "torch"):
        raise ValueError(f"{ENVIRONMENT_SWITCH}={choice!r}: use 'onednn' or 'torch'")
    return choice == "onednn" and bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


def use_onednn_linears(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every float32 ``nn.Linear`` of the decoder layers for a ``OneDnnLinear``, in place.
    The token embeddings, norms and a reranker's lm_head (read two rows at a time) stay as
    they are. If this torch's oneDNN cannot pack a weight, torch's own kernel stays."""

    def replacement(linear: torch.nn.Linear) -> torch.nn.Module:
        return OneDnnLinear(linear) if linear.weight.dtype == torch.float32 else linear

    try:
        swap_decoder_linears(model, replacement)
    except (AttributeError, RuntimeError) as error:
        # A torch without these ops fails at the first layer; swapped or not, each layer
        # computes the same function, so a model left as it is stays correct.
        logger.info("oneDNN linear unavailable (%s); using torch's", error)
    return model
