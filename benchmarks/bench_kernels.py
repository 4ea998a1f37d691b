"""CPU kernels behind the float32 path: torch's ``nn.Linear`` (its BLAS) against oneDNN's packed
GEMM (qwen3_core/kernels/onednn_linear.py) at the Qwen3-0.6B layer shapes, and torch's causal SDPA
against attention written as oneDNN GEMMs plus a softmax (measured, not shipped). Run:

    python -m benchmarks.bench_kernels

It shows whether oneDNN pays on this CPU; docs/performance.md has this machine's figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import best_seconds_per_call

# (in, out) of the 0.6B decoder's linears: q, k/v, o, gate/up, down.
LINEAR_SHAPES = [(1024, 2048), (1024, 1024), (2048, 1024), (1024, 3072), (3072, 1024)]
HEADS, KV_HEADS, HEAD_DIM = 16, 8, 128


def _seconds(function: Callable[[], Any]) -> float:
    return best_seconds_per_call(function, min_calls=3, min_seconds=0.25)


def _linear(x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor) -> None:
    rows = x.shape[0]
    flops = 2 * rows * weight.shape[0] * weight.shape[1]
    torch_rate = flops / _seconds(lambda: F.linear(x, weight)) / 1e9
    onednn_rate = (
        flops
        / _seconds(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""))
        / 1e9
    )
    print(
        f"| {rows} x {weight.shape[1]} -> {weight.shape[0]} | {torch_rate:.0f} | "
        f"{onednn_rate:.0f} | {onednn_rate / torch_rate:.2f} |"
    )


def _attention_by_gemm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of one sequence, one oneDNN GEMM pair per key/value head."""
    length = q.shape[2]
    group = HEADS // KV_HEADS
    mask = torch.full((length, length), float("-inf")).triu(1)
    out = torch.empty_like(q)
    for head in range(KV_HEADS):
        queries = q[0, group * head : group * (head + 1)].reshape(group * length, HEAD_DIM)
        scores = torch.ops.mkldnn._linear_pointwise(queries, k[0, head], None, "none", [], "")
        weights = (scores.view(group, length, length) * HEAD_DIM**-0.5 + mask).softmax(-1)
        values = torch.ops.mkldnn._linear_pointwise(
            weights.view(group * length, length), v[0, head].t(), None, "none", [], ""
        )
        out[0, group * head : group * (head + 1)] = values.view(group, length, HEAD_DIM)
    return out


def _attention(length: int) -> None:
    q = torch.randn(1, HEADS, length, HEAD_DIM)
    k, v = (torch.randn(1, KV_HEADS, length, HEAD_DIM) for _ in range(2))

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    def gemms() -> torch.Tensor:
        return _attention_by_gemm(q, k, v)

    sdpa_seconds, gemms_seconds = _seconds(sdpa), _seconds(gemms)
    difference = (gemms() - sdpa()).abs().max().item()
    print(
        f"| {length} | {sdpa_seconds * 1e3:.1f} | {gemms_seconds * 1e3:.1f} | "
        f"{sdpa_seconds / gemms_seconds:.2f} | {difference:.1e} |"
    )


def main() -> None:
    torch.manual_seed(0)
    print(f"CPU kernels, float32, {torch.get_num_threads()} threads")
    print(
        "\n| linear (rows x in -> out) | nn.Linear GFLOP/s | oneDNN GFLOP/s | oneDNN / nn.Linear |"
    )
    print("|---|---|---|---|")
    for in_features, out_features in LINEAR_SHAPES:
        weight = torch.randn(out_features, in_features)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        for rows in (64, 1024):
            _linear(torch.randn(rows, in_features), weight, packed)

    print(
        "\n| attention, one layer (tokens) | SDPA ms | oneDNN GEMMs ms "
        "| SDPA time / GEMMs time | max abs difference |"
    )
    print("|---|---|---|---|---|")
    for length in (256, 512, 1024):
        _attention(length)


if __name__ == "__main__":
    main()
