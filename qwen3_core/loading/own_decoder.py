"""Internal: qwen3-rag's CPU decoder (``qwen3_core.decoder.Qwen3Decoder``) assembled straight
from the safetensors files. Each linear weight is read into a reused buffer and handed to its
kernel (oneDNN float32, int8, or kept as ``nn.Linear``), so no second copy of the weights
stays resident, and transformers is never imported."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from qwen3_core.decoder import (
    MLP,
    Attention,
    DecoderConfig,
    DecoderLayer,
    Qwen3Decoder,
    RMSNorm,
    TokenEmbedding,
)
from qwen3_core.loading.memory import release_free_memory
from qwen3_core.weights import FileTokenEmbedding, SafetensorsFolder

MakeLinear = Callable[[torch.nn.Linear], torch.nn.Module]
"""What a float ``nn.Linear`` becomes: a packed kernel's module, or itself."""

_PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)

_FUSED = {
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"): "qkv_proj",
    ("mlp.gate_proj", "mlp.up_proj"): "gate_up_proj",
}
"""int8 only: one GEMM for the projections that read the same input. Its integer sums give
each output exactly what a GEMM of its own gives, and the input is quantized once, not three
or two times (these layers ran 12-18% faster on the 0.6B shape, 2 cores, 512 rows). On
oneDNN float32 the same fusion measured no faster, so float32 keeps transformers' layers."""


def plain_linear(linear: torch.nn.Linear) -> torch.nn.Module:
    """Keeps ``nn.Linear`` as it is (torch's own kernel)."""
    return linear


def plain_decoder(folder: Path, config: dict[str, Any]) -> Qwen3Decoder | None:
    """The float32 CPU decoder with ``nn.Linear`` layers (which tracers can follow, unlike
    packed kernels), or None where ``Qwen3Decoder`` does not cover the checkpoint. Not
    shared: for converting the model to another runtime."""
    return own_decoder(folder, config, torch.float32, plain_linear, fuse=False, plain=True)


def own_decoder(
    folder: Path,
    config: dict[str, Any],
    dtype: torch.dtype,
    make_linear: MakeLinear,
    *,
    fuse: bool,
    plain: bool = False,
) -> Qwen3Decoder | None:
    """The CPU decoder built from the files, or None where ``Qwen3Decoder`` does not cover
    the config or a tensor's dtype (transformers loads those).

    Args:
        make_linear: What each decoder-layer linear becomes.
        fuse: One linear for q/k/v and one for gate/up (int8's kernel gains from it).
        plain: The whole token table read at once (for a tracer), not row by row.
    """
    settings = DecoderConfig.from_config(config)
    files = SafetensorsFolder.open(folder)
    if settings is None or files is None:
        return None
    prefix = "model." if "model.embed_tokens.weight" in files else ""
    local = threading.local()

    def stacked(names: list[str]) -> torch.Tensor:
        # One buffer per thread and dtype, refilled for each weight: a kernel keeps its own
        # packed copy, so the plain weights are never all resident at once. A fused
        # group's weights are read into consecutive rows of one buffer.
        buffers = local.__dict__.setdefault("buffers", {})
        entries = [files.entries[prefix + name] for name in names]
        rows = sum(entry.shape[0] for entry in entries)
        out = _buffer(buffers, dtype, (rows, *entries[0].shape[1:]))
        start = 0
        for name, entry in zip(names, entries, strict=True):
            part = out[start : start + entry.shape[0]]
            if entry.dtype == dtype:
                files.read(prefix + name, part)
            else:
                stored = files.read(prefix + name, _buffer(buffers, entry.dtype, entry.shape))
                part.copy_(stored)
            start += entry.shape[0]
        return out

    def small(name: str) -> torch.Tensor:
        return files.read(prefix + name).to(dtype)

    def norm(name: str) -> RMSNorm:
        return RMSNorm(small(name), settings.rms_norm_eps)

    def build(names: list[str]) -> torch.nn.Module:
        weight = stacked([f"{name}.weight" for name in names])
        biases = [f"{name}.bias" for name in names]
        bias = torch.cat([small(b) for b in biases]) if prefix + biases[0] in files else None
        linear = _linear(weight, bias)
        module = make_linear(linear)
        if module is linear:  # kept as it is: give it a weight of its own
            linear.weight = torch.nn.Parameter(weight.clone(), requires_grad=False)
        release_free_memory()
        return module

    groups = _projection_groups(files, prefix, fuse)
    work = [
        [f"layers.{index}.{member}" for member in group]
        for index in range(settings.num_hidden_layers)
        for group, _ in groups
    ]
    # One weight per core at a time: fbgemm's int8 packing runs on one thread, and reading
    # and packing overlap (measured on 2 cores: int8 1.5x faster to load).
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        built = iter(pool.map(build, work))
    layers = []
    for index in range(settings.num_hidden_layers):
        block = f"layers.{index}."
        linears = {name: next(built) for _, name in groups}
        attention = Attention(
            settings,
            linears,
            norm(f"{block}self_attn.q_norm.weight"),
            norm(f"{block}self_attn.k_norm.weight"),
        )
        layers.append(
            DecoderLayer(
                attention,
                MLP(linears),
                norm(f"{block}input_layernorm.weight"),
                norm(f"{block}post_attention_layernorm.weight"),
            )
        )
    table = prefix + "embed_tokens.weight"
    # Rows read as tokens are first looked up; a converter traces the plain decoder, so it
    # gets the whole table.
    embeddings = (
        TokenEmbedding(files.read(table), dtype)
        if plain
        else FileTokenEmbedding(files.rows_on_demand(table), dtype)
    )
    return Qwen3Decoder(settings, embeddings, layers, norm("norm.weight"), dtype).eval()


def _projection_groups(
    files: SafetensorsFolder, prefix: str, fuse: bool
) -> list[tuple[tuple[str, ...], str]]:
    """Per decoder layer, the projections built as one linear each, and the module name each
    is given: fused groups where ``fuse`` and their biases agree (all or none present)."""
    groups: list[tuple[tuple[str, ...], str]] = []
    rest = list(_PROJECTIONS)
    for group, name in _FUSED.items() if fuse else ():
        biases = {f"{prefix}layers.0.{member}.bias" in files for member in group}
        if len(biases) == 1:
            groups.append((group, name))
            rest = [member for member in rest if member not in group]
    groups += [((member,), member.split(".")[1]) for member in rest]
    return groups


def _buffer(
    buffers: dict[torch.dtype, torch.Tensor], dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """A view of ``shape`` on the thread's one buffer of ``dtype``, grown to the largest
    weight it has held: one per size would add tens of MiB per loading thread to the peak."""
    size = math.prod(shape)
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < size:
        buffer = buffers[dtype] = torch.empty(size, dtype=dtype)
    return buffer[:size].view(shape)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.nn.Linear:
    """An ``nn.Linear`` around the given tensors, without the random initialisation its
    constructor runs (even on the meta device that costs 0.5 s per model, and imports
    torch._decomp)."""
    linear = torch.nn.Linear.__new__(torch.nn.Linear)
    torch.nn.Module.__init__(linear)
    linear.out_features, linear.in_features = weight.shape
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    linear.register_parameter(
        "bias", None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
    )
    return linear
