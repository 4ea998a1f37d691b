"""Internal: what a transformers-backend load runs, decided from its options before any file
is read: the device and dtype, the decoder, and the float32 or int8 linear kernel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from qwen3_core.backend_options import (
    CpuLinear,
    Decoder,
    Int8Kernel,
    Quantization,
    TransformersOptions,
)
from qwen3_core.devices import resolve_device, resolve_dtype
from qwen3_core.kernels.int8 import check_int8_supported, int8_kernel, int8_linears, quantize_int8
from qwen3_core.kernels.onednn_linear import (
    onednn_linear_wanted,
    onednn_or_plain,
    use_onednn_linears,
)
from qwen3_core.loading.own_decoder import MakeLinear, plain_linear


@dataclass(frozen=True)
class LoadPlan:
    """The resolved choices of one load."""

    device: torch.device
    dtype: torch.dtype
    quantization: Quantization | None
    int8_kernel: Int8Kernel | None
    """With int8: the kernel it runs on (read once: it names the cached model and builds it)."""
    cpu_linear: CpuLinear | None
    """On CPU in float32: the linear kernel."""
    decoder: Decoder | None
    """None: qwen3-rag's where it covers the checkpoint, else transformers'."""
    model_kwargs: Mapping[str, Any]

    def key(self) -> tuple[str, ...]:
        """What tells loads of one folder apart: each is a model object of its own."""
        return (
            str(self.device),
            str(self.dtype),
            self.quantization or "",
            self.int8_kernel or "",
            self.cpu_linear or "",
            # qwen3-rag's where it covers the checkpoint, asked for or by default: one model.
            "transformers" if self.decoder == "transformers" else "",
            repr(sorted(self.model_kwargs.items())),
        )

    def make_linear(self) -> MakeLinear:
        """What each decoder-layer linear of qwen3-rag's decoder becomes."""
        if self.int8_kernel is not None:
            return int8_linears(self.int8_kernel)
        if self.cpu_linear == "onednn":
            return onednn_or_plain
        return plain_linear

    def swap_linears(self, model: torch.nn.Module) -> None:
        """The same kernels swapped into transformers' model, in place."""
        if self.int8_kernel is not None:
            quantize_int8(model, self.int8_kernel)
        elif self.cpu_linear == "onednn":
            use_onednn_linears(model)

    def resolved(self, decoder: Decoder) -> dict[str, Any]:
        """The options' fields as this load resolved them, ``decoder`` the one that ran."""
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "decoder": decoder,
            "cpu_linear": self.cpu_linear,
            "int8_kernel": self.int8_kernel,
        }


def plan_load(options: TransformersOptions) -> LoadPlan:
    """The device and dtype resolved and checked against the other options, int8's
    conditions checked, and the kernels chosen, before anything is read.

    Raises:
        ValueError: A setting that the resolved device or dtype rules out.
        ImportError: int8 on a torch without a quantized CPU engine.
    """
    if options.quantization is not None and options.device is not None:
        _check_int8_device(str(options.device))  # before resolving: 'cuda' fails alike everywhere
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    if options.quantization is not None:
        _check_int8_device(str(device))
        if dtype != torch.float32:
            raise ValueError(
                f"quantization='int8' works from float32 weights, not {dtype}: pass "
                "dtype='float32' or leave dtype unset"
            )
        check_int8_supported()
    replace(options, device=device, dtype=dtype)  # the explicit choices, checked on them
    on_cpu = device.type == "cpu"
    kernel = int8_kernel(options.int8_kernel) if options.quantization is not None else None
    linear: CpuLinear | None = None
    if on_cpu and dtype == torch.float32 and options.quantization is None:
        linear = "onednn" if onednn_linear_wanted(options.cpu_linear) else "torch"
    decoder: Decoder | None = options.decoder
    # model_kwargs are transformers' from_pretrained arguments: only transformers reads them.
    if options.model_kwargs or not on_cpu:
        decoder = "transformers"
    return LoadPlan(
        device, dtype, options.quantization, kernel, linear, decoder, options.model_kwargs
    )


def _check_int8_device(device: str) -> None:
    if device.partition(":")[0].strip().lower() != "cpu":
        raise ValueError(
            f"quantization='int8' runs on CPU only, not on {device!r}: pass device='cpu' "
            "(on a GPU, bfloat16 is the fast path)"
        )
