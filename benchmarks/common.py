"""What the benchmarks share: models, workloads, isolated timing, FLOP counts, the table.

Each method runs in a fresh spawned process, so its peak memory is its own: on CPU the peak
resident set above the loaded model, on GPU the peak allocated memory above the model.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue as queue_module
import re
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def model_folders(shape: str) -> Any:
    """The offline random models of ``shape``, built once into the test-model cache
    (``qwen3_core.testing.models_cache_folder()``)."""
    from qwen3_core.testing import build_test_models

    return build_test_models(shape=shape)


def base_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--shape",
        default="small",
        choices=["tiny", "small", "0.6b"],
        help="model shape: 0.6b is the exact Qwen3-0.6B shape (minutes on CPU); small is quick",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the workload")
    parser.add_argument("--only", nargs="*", help="run only these methods")
    return parser


CPU_ONLY = (
    "qwen3-rag, int8",
    "qwen3-rag, torch linear",
    "qwen3-rag Qwen3Embedder, int8",
    "qwen3-rag Qwen3Reranker, int8",
)
"""Methods that exist for CPU only: int8 on VNNI, and torch's float32 linear against oneDNN's."""


def selected(name: str, args: argparse.Namespace) -> bool:
    """Whether to run method ``name``: asked for (``--only``, or nothing asked), and able to
    run on the chosen device."""
    return (not args.only or name in args.only) and (args.device == "cpu" or name not in CPU_ONLY)


# ---------------------------------------------------------------- workloads


def _word_ids(tokenizer: Any) -> list[int]:
    """Ids whose text is ' word' (lowercase ASCII): joined with spaces, n such words are
    exactly n tokens, so workloads have exact token lengths."""
    words = []
    for token, index in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        if re.fullmatch(r" [a-z]{3,9}", text) and index < 151643:
            words.append(index)
    return sorted(words)[:4000]


def make_texts(tokenizer: Any, count: int, low: int, high: int, seed: int) -> list[str]:
    """``count`` texts of exactly ``low``..``high`` tokens each (uniform, fixed seed)."""
    rng = np.random.default_rng(seed)
    words = _word_ids(tokenizer)
    lengths = rng.integers(low, high + 1, size=count)
    return [tokenizer.decode(rng.choice(words, size=int(n)).tolist()).lstrip() for n in lengths]


# ---------------------------------------------------------------- measuring


def matmul_peaks(device: str) -> dict[str, float]:
    """This machine's dense matmul rates (FLOP/s): on GPU ``torch.mm`` in bfloat16; on CPU
    float32, both ``torch.mm`` (its BLAS) and oneDNN's packed GEMM, which torch also ships and
    which the CPU models run (qwen3_core/kernels/onednn_linear.py). The faster is the peak."""
    if device != "cpu":
        return {"torch.mm": _rate(device, torch.bfloat16, 8192, 50, None)}
    peaks = {"torch.mm": _rate(device, torch.float32, 2048, 5, None)}
    if torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        peaks["oneDNN"] = _rate(device, torch.float32, 2048, 5, "onednn")
    return dict(sorted(peaks.items(), key=lambda item: -item[1]))


def _rate(device: str, dtype: torch.dtype, n: int, repeats: int, kernel: str | None) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    if kernel == "onednn":
        packed = torch.ops.mkldnn._reorder_linear_weight(b)

        def product() -> Any:
            return torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    else:

        def product() -> Any:
            return a @ b

    def synchronize() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    # A second or more per trial: bursts of a fraction of a second moved the CPU rate by
    # 1.6x from one run to the next.
    seconds = best_seconds_per_call(
        product, min_calls=repeats, min_seconds=1.0, synchronize=synchronize
    )
    return 2 * n**3 / seconds


def best_seconds_per_call(
    function: Callable[[], Any],
    *,
    min_calls: int,
    min_seconds: float,
    synchronize: Callable[[], None] = lambda: None,
) -> float:
    """The best time per call of ``function`` over three trials, each of at least
    ``min_calls`` calls and ``min_seconds``. Calls go in runs of ``min_calls``, with
    ``synchronize`` (a GPU's) before each reading of the clock."""
    for _ in range(2):
        function()
    best = float("inf")
    for _ in range(3):
        synchronize()
        start, calls = time.perf_counter(), 0
        while calls < min_calls or time.perf_counter() - start < min_seconds:
            for _ in range(min_calls):
                function()
            calls += min_calls
            synchronize()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def sequence_flops(config: dict[str, Any], length: int) -> float:
    """Forward FLOPs of one causal sequence: matmul weights (lm_head excluded) plus attention
    scores and values over the causal context."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv, hd = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    per_layer = hidden * heads * hd * 2 + hidden * kv * hd * 2 + 3 * hidden * inter
    attention = 2 * 2 * heads * hd * length * (length + 1) / 2
    return float(config["num_hidden_layers"] * (2 * per_layer * length + attention))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    method: str
    seconds: float
    peak_extra_bytes: int
    note: str = ""


def _worker(target: str, name: str, kwargs: dict[str, Any], device: str, queue: Any) -> None:
    try:
        module, function = target.rsplit(".", 1)
        setup: Callable[..., Callable[[], Any]] = getattr(
            __import__(module, fromlist=[function]), function
        )
        run = setup(**kwargs)  # loads the model; returns the timed workload
        run_small = getattr(run, "warmup", None)
        if run_small is not None:
            run_small()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_bytes()
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        queue.put(json.dumps({"seconds": seconds, "peak": max(int(peak), 0)}))
    except Exception as exc:  # reported as a row, not a crash of the whole benchmark
        queue.put(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))


def measure(
    name: str,
    target: str,
    device: str,
    kwargs: dict[str, Any],
    *,
    timeout: float | None = None,
) -> Measurement:
    """Run ``target(**kwargs)()`` in a fresh process and time the returned workload.

    ``timeout``: seconds for the whole process (loading included); past it the process is
    killed and the row says so. A process that dies without an answer is a row too, so a
    crashed or over-budget method never hangs the benchmark."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(target, name, kwargs, device, queue))
    process.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    result: dict[str, Any] | None = None
    while result is None:
        try:
            result = json.loads(queue.get(timeout=1.0))
        except queue_module.Empty:
            if not process.is_alive():
                try:  # an answer sent just before the process ended may still be in transit
                    result = json.loads(queue.get(timeout=1.0))
                except queue_module.Empty:
                    result = {"error": f"exited with code {process.exitcode} and no result"}
            elif deadline is not None and time.monotonic() > deadline:
                process.kill()
                result = {"error": f"stopped at its {timeout:.0f} s budget"}
    process.join()
    if "error" in result:
        print(f"  {name}: failed: {result['error']}", flush=True)
        return Measurement(name, float("nan"), 0, note=result["error"])
    print(f"  {name}: {result['seconds']:.2f} s", flush=True)
    return Measurement(name, result["seconds"], result["peak"])


def print_table(
    title: str,
    rows: Sequence[Measurement],
    *,
    items: int,
    tokens: int,
    flops: float,
    peaks: dict[str, float],
    baselines: Sequence[str],
) -> None:
    """Throughput, memory, share of each measured matmul peak, ratios against each baseline
    of the same run."""
    by_name = {r.method: r for r in rows}
    print(f"\n{title}")
    rates = ", ".join(f"{name} {rate / 1e9:.0f}" for name, rate in peaks.items())
    print(f"{items} items, {tokens} tokens; matmul peaks (GFLOP/s): {rates}")
    header = "| method | s | tokens/s | items/s | peak MiB |"
    header += "".join(f" % of {name} peak |" for name in peaks)
    ratio_names = [b for b in baselines if b in by_name]
    header += "".join(f" x {b} |" for b in ratio_names)
    print(header)
    print("|" + "---|" * (5 + len(peaks) + len(ratio_names)))
    for row in rows:
        line = (
            f"| {row.method} | {row.seconds:.2f} | {tokens / row.seconds:,.0f} | "
            f"{items / row.seconds:.2f} | {row.peak_extra_bytes / 2**20:,.0f} |"
        )
        for rate in peaks.values():
            line += f" {100 * flops / row.seconds / rate:.0f}% |"
        for base in ratio_names:
            line += f" {by_name[base].seconds / row.seconds:.2f} |"
        print(line)
