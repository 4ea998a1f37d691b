"""Internal: the CPU float32 linear layers on oneDNN, with weights packed once at load.

torch's ``nn.Linear`` calls its BLAS (MKL in the CPU wheels), which on some x86 CPUs runs far
below the hardware's rate: on a 2-core AMD EPYC with AVX-512, ``torch.mm`` reaches 190-230 GFLOP/s
where oneDNN's packed float32 GEMM, also inside torch, reaches 440-510 (the two cores'
AVX-512 FMA peak). Same float32 arithmetic, only the summation order differs (scores agree
within 1e-5; tests/test_onednn_linear.py). ``TransformersOptions(cpu_linear="torch")`` keeps
``nn.Linear``.

The oneDNN ops are torch's private ``mkldnn`` ops, which another torch build or CPU may lack or
break. So they are probed once per process, on a small weight against
``torch.nn.functional.linear``, before any model uses them; if they raise or compute something
else, models keep ``nn.Linear``. If they fail later, inside a forward pass, each layer unpacks
its weight and runs torch's kernel from then on. Either way one warning says why.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch

from qwen3_core.backend_options import CpuLinear
from qwen3_core.kernels.decoder_linears import swap_decoder_linears

logger = logging.getLogger("qwen3_core")


def _mkldnn_ops() -> Any:
    """torch's private oneDNN ops, looked up at each call: a torch without them fails there,
    not at import."""
    return torch.ops.mkldnn


def _pack(weight: torch.Tensor) -> torch.Tensor:
    # No batch-size hint: measured, the layout it picks is as fast for 1..2048 rows.
    packed: torch.Tensor = _mkldnn_ops()._reorder_linear_weight(weight)
    return packed


def _onednn_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> Any:
    return _mkldnn_ops()._linear_pointwise(x, packed, bias, "none", [], "")


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    # The reorder back to the plain layout is a permutation: the weight comes back bit for bit.
    return packed.to_dense()


class _Health:
    """Whether this process's oneDNN ops can be trusted: the probe's verdict, and the first
    failure (probe or run time), after which torch's own kernel is used."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.probed = False
        self.probe_failure: str | None = None
        self.failure: str | None = None

    def fail(self, reason: str, when: str) -> None:
        with self.lock:
            if self.failure is not None:
                return
            self.failure = reason
            logger.warning("oneDNN float32 linear %s (%s); using torch's own kernel", when, reason)

    def probe_passed(self) -> bool:
        with self.lock:
            if not self.probed:
                self.probed = True
                self.probe_failure = _probe()
                if self.probe_failure is not None:
                    self.fail(self.probe_failure, "is unavailable")
            return self.probe_failure is None


_health = _Health()


def failure_reason(error: BaseException) -> str:
    """Why a kernel failed, as one log line, however long or multi-line the error's message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _probe() -> str | None:
    """Why the ops cannot be used here, or None: a real call of each, with the shapes and
    strides a forward pass gives them, checked against torch's own kernel."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(72, 96, generator=generator)
    bias = torch.randn(72, generator=generator)
    x = torch.randn(2, 3, 192, generator=generator)[..., ::2]  # a sliced activation is strided
    original = weight.clone()
    try:
        with torch.no_grad():
            packed = _pack(weight)
            out = _onednn_linear(x, packed, bias)
            # The loader packs from one reused buffer: the packed weight must be a copy.
            weight.zero_()
            unpacked = _unpack(packed)
    except Exception as error:  # any failure, whatever the build raises, means not here
        return failure_reason(error)
    weight = original
    expected = torch.nn.functional.linear(x, weight, bias)
    if not (
        isinstance(out, torch.Tensor)
        and out.shape == expected.shape
        and out.dtype == torch.float32
        and torch.allclose(out, expected, rtol=1e-4, atol=1e-4)
    ):
        return "its result differs from torch.nn.functional.linear"
    if not torch.equal(unpacked, weight):
        return "its packed weight does not unpack to the original"
    return None


class OneDnnLinear(torch.nn.Module):
    """A float32 ``nn.Linear`` whose weight is held in oneDNN's blocked layout, ready for its
    GEMM; the plain weight is dropped, so memory stays one copy. If oneDNN fails at run time,
    the weight is unpacked in place of the packed one and torch's kernel runs instead."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._packed: torch.Tensor | None = _pack(linear.weight.detach())
        self._weight: torch.Tensor | None = None
        self._bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed
        if packed is not None and _health.failure is None:
            try:
                out: torch.Tensor = _onednn_linear(x, packed, self._bias)
                return out
            except Exception as error:
                weight = _unpack(packed)
                # If torch's kernel raises too, the input is at fault: its error propagates
                # and the layer stays on oneDNN. Otherwise oneDNN is, for the whole process.
                result = torch.nn.functional.linear(x, weight, self._bias)
                _health.fail(failure_reason(error), "failed while running")
                self._keep(weight)
                return result
        return torch.nn.functional.linear(x, self._plain_weight(), self._bias)

    def _plain_weight(self) -> torch.Tensor:
        weight = self._weight
        if weight is not None:
            return weight
        with _health.lock:
            if self._weight is None:
                assert self._packed is not None
                self._weight, self._packed = _unpack(self._packed), None
            return self._weight

    def _keep(self, weight: torch.Tensor) -> None:
        # In place of the packed weight, so memory stays one copy; a concurrent caller may
        # have got there first with the same values.
        with _health.lock:
            if self._weight is None:
                self._weight, self._packed = weight, None

    @property
    def kernel(self) -> CpuLinear:
        """The kernel the layer's next call runs: ``"onednn"`` while it holds its weight
        packed for oneDNN and oneDNN works in this process; ``"torch"`` once oneDNN has failed
        (the layer then holds the plain weight in place of the packed one)."""
        return "onednn" if self._packed is not None and _health.failure is None else "torch"

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.kernel}"


def onednn_linear_wanted(choice: CpuLinear | None = None) -> bool:
    """Whether CPU float32 models should swap in ``OneDnnLinear``: ``choice`` (None: oneDNN's
    where it works), whether this torch has oneDNN at all, and whether its ops pass the
    probe."""
    return (
        choice != "torch"
        and bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
        # A run-time failure does not count here: the model that met it is cached under
        # this variant, and later engines share it rather than load another copy.
        and _health.probe_passed()
    )


def onednn_or_plain(linear: torch.nn.Linear) -> torch.nn.Module:
    """``linear`` as a ``OneDnnLinear``, or unchanged where its weight is not float32 or
    oneDNN fails the probe, has failed before, or fails to pack it."""
    if (
        linear.weight.dtype != torch.float32
        or not _health.probe_passed()
        or _health.failure is not None
    ):
        return linear
    try:
        return OneDnnLinear(linear)
    except Exception as error:
        # Layers already swapped turn back to torch's kernel at their next call; each layer
        # computes the same function either way.
        _health.fail(failure_reason(error), "could not pack a weight")
        return linear


def use_onednn_linears(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every float32 ``nn.Linear`` of the decoder layers for a ``OneDnnLinear``, in place.
    The token embeddings and norms stay as they are. Where oneDNN fails the probe, or has
    failed before, the model is left as it is."""
    if not _health.probe_passed() or _health.failure is not None:
        return model
    swap_decoder_linears(model, onednn_or_plain)
    return model
