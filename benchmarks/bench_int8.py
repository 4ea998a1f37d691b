"""The int8 linear layers at the Qwen3-0.6B decoder's shapes: one activation scale per token
(``Int8Linear``, what qwen3-rag runs) against one scale per call (torch's dynamic kernel on
the same packed weights: the scheme it replaced), on each int8 kernel this CPU runs, in the
activation range this CPU uses (7 bits without VNNI). Run:

    python -m benchmarks.bench_int8 [--rows 16 128 512] [--threads 2]

Per shape and row count: the time of each scheme, their ratio, and each one's relative
error against float32 on the same input; the two schemes alternate in each trial, so load
from other work falls on both alike. The input's rows have different magnitudes, as a
batch of texts does (a row's scale is its own only under the per-token scheme).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_seconds_per_call
from qwen3_core.kernels.int8 import Int8Linear, has_vnni, int8_kernel

# (in, out) of the 0.6B decoder's int8 GEMMs: fused q/k/v, o, fused gate/up, down.
SHAPES = [(1024, 4096), (2048, 1024), (1024, 6144), (3072, 1024)]


def _error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 128, 512])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reduce_range = not has_vnni()
    kernels = ["fbgemm"] if int8_kernel() == "fbgemm" else ["fbgemm", "onednn"]
    generator = torch.Generator().manual_seed(0)
    print(f"activation range: {'7 bits (no VNNI)' if reduce_range else '8 bits'}; "
          f"{args.threads} threads")  # fmt: skip
    print(
        "| kernel | shape | rows | per token ms | per call ms | per token / per call | "
        "per-token error | per-call error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kernel in kernels:
        for fan_in, fan_out in SHAPES:
            linear = torch.nn.Linear(fan_in, fan_out, bias=False)
            torch.nn.init.normal_(linear.weight, std=0.02, generator=generator)
            layer = Int8Linear(linear, reduce_range=reduce_range, kernel=kernel)
            for rows in args.rows:
                x = torch.randn(rows, fan_in, generator=generator)
                x *= torch.logspace(0, 1.5, rows).unsqueeze(1)  # rows of unequal magnitude
                with torch.inference_mode():
                    want = linear(x)

                    def per_call(x: torch.Tensor = x, layer: Int8Linear = layer) -> torch.Tensor:
                        out: torch.Tensor = torch.ops.quantized.linear_dynamic(
                            x, layer._packed, reduce_range=reduce_range
                        )
                        return out

                    def per_token(x: torch.Tensor = x, layer: Int8Linear = layer) -> torch.Tensor:
                        out: torch.Tensor = layer(x)
                        return out

                    times = {"token": float("inf"), "call": float("inf")}
                    for _ in range(3):  # alternating, so that load falls on both alike
                        for name, run in (("token", per_token), ("call", per_call)):
                            seconds = best_seconds_per_call(run, min_calls=3, min_seconds=0.1)
                            times[name] = min(times[name], seconds)
                    print(
                        f"| {kernel} | {fan_in} -> {fan_out} | {rows} | "
                        f"{times['token'] * 1e3:.3f} | {times['call'] * 1e3:.3f} | "
                        f"{times['token'] / times['call']:.2f} | "
                        f"{_error(per_token(), want):.4f} | {_error(per_call(), want):.4f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
