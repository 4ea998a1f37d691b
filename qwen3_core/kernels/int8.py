"""Internal: the opt-in int8 CPU path: the decoder's linear layers in int8 on a dynamic kernel
(the input quantized on each call). Faster, not exact: see docs/performance.md.

Two kernels compute the same quantized GEMM, and the faster one for the CPU is picked at run
time:

- oneDNN's, where the CPU has AMX int8 tiles: 2-3x fbgemm's speed on the 0.6B shape's
  projections at 512 rows (2 cores), with the same error against float32;
- fbgemm's everywhere else. With VNNI it runs level with oneDNN's; without VNNI (AVX2 only)
  it keeps its accuracy where oneDNN's full-range kernel loses it.

``TransformersOptions(int8_kernel="fbgemm")`` or ``"onednn"`` overrides the choice. oneDNN's
is probed once per process against fbgemm's before any model uses it; if it fails, models
keep fbgemm and one warning says why.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, SupportsIndex

import torch

from qwen3_core.backend_options import Int8Kernel
from qwen3_core.kernels.decoder_linears import swap_decoder_linears
from qwen3_core.kernels.onednn_linear import failure_reason

logger = logging.getLogger("qwen3_core")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (int8 dot products into int32, no int16 saturation)."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni"})


class _QuantizedEngine:
    """torch's quantized engine is one process-wide setting, and ``linear_prepack`` packs
    for whichever engine is set (a packed weight then runs on its own kernel whatever is set
    later). Packing threads that want the same engine share it; one that wants another
    waits, and the user's setting is restored once the last has packed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._users = 0
        self._engine = ""
        self._saved = ""

    @contextmanager
    def use(self, engine: str) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._users == 0 or self._engine == engine)
            if self._users == 0:
                self._saved, self._engine = torch.backends.quantized.engine, engine
                torch.backends.quantized.engine = engine
            self._users += 1
        try:
            yield
        finally:
            with self._changed:
                self._users -= 1
                if self._users == 0:
                    torch.backends.quantized.engine = self._saved
                    self._changed.notify_all()


_engine = _QuantizedEngine()


def quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric int8, one scale per output row: the integers ``quantize_per_channel`` gives
    (times the float32 inverse of the scale, rounded half to even), 5-10x faster.

    Row blocks of about 1 MiB go through one small float32 buffer, which stays in the
    cache; ``quantize_per_channel`` and an infinity norm over the whole weight each took
    longer than the whole of this, and made most of an int8 model's load time."""
    out_features, in_features = weight.shape
    rows = max(1, (1 << 18) // in_features)
    quantized = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(out_features, dtype=torch.float64)
    work, largest = torch.empty(rows, in_features), torch.empty(rows)
    for start in range(0, out_features, rows):
        block = weight[start : start + rows]
        count = len(block)
        block_work, block_scales = work[:count], largest[:count]
        torch.amax(torch.abs(block, out=block_work), dim=1, out=block_scales)
        block_scales.div_(127).clamp_(min=1e-12)
        scales[start : start + count] = block_scales
        torch.mul(block, block_scales.reciprocal_().unsqueeze(1), out=block_work)
        quantized[start : start + count] = block_work.round_()
    with warnings.catch_warnings():
        # torch 2.13 marks its quantized tensor types deprecated (pytorch issue 184982)
        # but has no other int8 CPU GEMM with dynamic activations; only that warning.
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel"
        )
        return torch._make_per_channel_quantized_tensor(
            quantized, scales, torch.zeros(out_features, dtype=torch.long), 0
        )


def _prepack(quantized: torch.Tensor, bias: torch.Tensor | None, kernel: Int8Kernel) -> object:
    with _engine.use(kernel):
        return torch.ops.quantized.linear_prepack(quantized, bias)


_TINY = torch.finfo(torch.float32).tiny

_SENTINEL_ROW_ENDS = (1.0, -1.0)


def _scaled_rows_linear(
    rows: torch.Tensor,
    largest: torch.Tensor,
    packed: object,
    kernel: Int8Kernel,
    reduce_range: bool,
) -> torch.Tensor:
    """``(rows / largest) @ weight.T`` in int8, ``largest`` holding each row's largest
    magnitude, with the activations quantized on the fixed range [-1, 1] whatever the rows
    hold.

    oneDNN's dynamic kernel derives the parameters from the input's minimum and maximum:
    one more row holding 1 and -1 fixes them at [-1, 1] (its result is dropped). fbgemm
    takes them, so it gets the same ones without that row: both kernels then sum the same
    integers."""
    if kernel == "fbgemm":
        top = 127 if reduce_range else 255
        op = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
        out: torch.Tensor = op(rows / largest, 2.0 / top, (top + 1) // 2, packed)
        return out
    count, width = rows.shape
    padded = rows.new_empty(count + 1, width)
    torch.div(rows, largest, out=padded[:count])  # written once, into the padded input
    padded[count].zero_()
    padded[count, : len(_SENTINEL_ROW_ENDS)] = torch.tensor(_SENTINEL_ROW_ENDS)
    result: torch.Tensor = torch.ops.quantized.linear_dynamic(
        padded, packed, reduce_range=reduce_range
    )
    return result[:count]


class Int8Linear(torch.nn.Module):
    """A ``nn.Linear`` with int8 weights (symmetric, one scale per output row) whose input is
    quantized to uint8 on each call with one scale per input row (token), on a dynamic int8
    kernel (``kernel``: fbgemm's or oneDNN's).

    One scale per row makes a text's result independent of the other texts in its batch: a
    scale per call, as torch's dynamic kernels take, quantizes a short text with the range
    of the longest one beside it, so the same document embedded alone and in a batch would
    differ (by about 1e-2 in cosine on the 0.6B shape). Each row is divided by its largest
    magnitude, quantized on the fixed range [-1, 1], and its output multiplied back: the
    integer products are exact, so a row's output is the same in any batch.

    The torch ops themselves, not ``torch.ao.quantization.quantize_dynamic``: that helper
    keeps one weight scale per matrix, about 4x the error per layer of this form on the
    Qwen3-0.6B shape. Without VNNI the activations keep 7 bits (``reduce_range``), against
    the int16 saturation of the AVX2 kernels; with VNNI the full 8-bit range is safe.
    """

    def __init__(
        self, linear: torch.nn.Linear, *, reduce_range: bool, kernel: Int8Kernel = "fbgemm"
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.reduce_range, self.kernel = reduce_range, kernel
        # The bias is added after the per-row rescaling, in float32.
        self.bias = None if linear.bias is None else linear.bias.detach().float().clone()
        quantized = quantize_weight(linear.weight.detach().float())
        self._packed = _prepack(quantized, None, kernel)
        if kernel == "onednn":
            # oneDNN's packed weight keeps the int8 tensor it was packed from, for unpacking
            # only, which would hold every weight twice (0.45 GB more on the 0.6B shape).
            # Its bytes are freed; copying or pickling the layer, which would unpack them,
            # is refused below.
            quantized.untyped_storage().resize_(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        # A zero row stays zero (0 / tiny); a non-finite one stays non-finite, and is
        # refused where the engine checks its outputs.
        largest = torch.amax(torch.abs(rows), dim=1, keepdim=True).clamp_(min=_TINY)
        out = _scaled_rows_linear(rows, largest, self._packed, self.kernel, self.reduce_range)
        out.mul_(largest)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.kernel}"

    def __deepcopy__(self, memo: dict[int, object]) -> Int8Linear:
        raise TypeError(_NOT_COPIED)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        raise TypeError(_NOT_COPIED)


_NOT_COPIED = (
    "an int8 model cannot be copied or pickled (its packed weights keep no plain copy): "
    "load the model again with quantization='int8' instead"
)


def check_int8_supported() -> None:
    """Raise ValueError unless this torch can run ``Int8Linear`` (an x86 CPU, fbgemm)."""
    engines = torch.backends.quantized.supported_engines
    if "fbgemm" not in engines:
        raise ValueError(
            f"quantization='int8' needs torch's x86/fbgemm int8 kernels; this torch's "
            f"quantized engines are {engines}"
        )


@functools.cache
def _onednn_failure() -> str | None:
    """Why oneDNN's dynamic int8 kernel cannot be used here, or None: a real call on a small
    weight, against fbgemm's on the same int8 weight (both sum integers exactly; they may
    differ only in the last bits of the rescaling)."""
    if "onednn" not in torch.backends.quantized.supported_engines:
        return "this torch has no oneDNN quantized engine"
    generator = torch.Generator().manual_seed(0)
    weight = quantize_weight(torch.randn(72, 96, generator=generator))
    x = torch.randn(5, 96, generator=generator)
    largest = x.abs().amax(dim=1, keepdim=True)
    reduce_range = not has_vnni()
    try:
        outs = [
            _scaled_rows_linear(x, largest, _prepack(weight, None, kernel), kernel, reduce_range)
            for kernel in ("fbgemm", "onednn")
        ]
    except Exception as error:  # any failure, whatever the build raises, means not here
        return failure_reason(error)
    want, got = outs
    if not (got.shape == want.shape and torch.allclose(got, want, rtol=1e-3, atol=1e-3)):
        return "its result differs from fbgemm's"
    return None


def int8_kernel(choice: Int8Kernel | None = None) -> Int8Kernel:
    """The int8 kernel CPU models run: ``choice``, else (None) oneDNN's where the CPU has AMX
    int8 tiles; fbgemm's where oneDNN's fails its probe."""
    if choice == "fbgemm" or (choice is None and "amx_int8" not in _cpu_flags()):
        return "fbgemm"
    failure = _onednn_failure()
    if failure is not None:
        _warn_once(failure)
        return "fbgemm"
    return "onednn"


@functools.cache
def _warn_once(failure: str) -> None:
    logger.warning("oneDNN int8 linear is unavailable (%s); using fbgemm's", failure)


def int8_linears(kernel: Int8Kernel | None = None) -> Callable[[torch.nn.Linear], torch.nn.Module]:
    """What turns a float32 ``nn.Linear`` into an ``Int8Linear`` on ``kernel`` (by default
    the one ``int8_kernel`` picks)."""
    check_int8_supported()
    reduce_range = not has_vnni()
    chosen = kernel or int8_kernel()
    return lambda linear: Int8Linear(linear, reduce_range=reduce_range, kernel=chosen)


def quantize_int8(model: torch.nn.Module, kernel: Int8Kernel | None = None) -> torch.nn.Module:
    """Swap every ``nn.Linear`` of the decoder layers for an ``Int8Linear`` on ``kernel``
    (by default the one ``int8_kernel`` picks), in place. The token embeddings and norms
    stay float32."""
    return swap_decoder_linears(model, int8_linears(kernel))
