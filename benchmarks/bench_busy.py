"""Small calls on a busy machine: how torch's OpenMP threads wait decides their time there.

Each setting runs in a fresh process, on a quiet machine and then beside ``--busy`` busy
processes of the benchmark's own (``benchmarks.background``): one query reranked against two
short documents per call, as ``qwen3-rag eval`` does per query with ``--candidates 2``, and one
query embedded per call. Settings:

- ``torch's default``: libgomp spins 300,000 rounds before it sleeps, as in a program that
  loaded torch before qwen3-rag (set as ``GOMP_SPINCOUNT=300000``, since ``import
  qwen3_core`` first would otherwise choose the passive policy);
- ``OMP_WAIT_POLICY=PASSIVE``: what ``import qwen3_core`` sets when torch is not loaded yet;
- ``GOMP_SPINCOUNT=10000``: a shorter spin;
- ``1 thread``: ``torch.set_num_threads(1)`` after load under torch's default wait, which
  any library user can call.

The first three run with the engines' default ``cpu_threads="adaptive"`` (torch's thread
count less the cores other processes keep busy), and torch's default and the passive policy
again with ``cpu_threads="torch"`` (torch's count, whatever the load; so does ``1 thread``).

    python -m benchmarks.bench_busy --shape tiny --busy 2      # seconds
    python -m benchmarks.bench_busy --shape 0.6b --busy 1 --calls 20

The table gives each setting's median and mean milliseconds per call, quiet and busy, and
the busy mean over the quiet mean. Compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.background import background_load, exit_on_sigterm, running_processes
from benchmarks.bench_peers import host
from benchmarks.common import REPO

SETTINGS: dict[str, tuple[dict[str, str], int | None, str]] = {
    "torch's default": ({"GOMP_SPINCOUNT": "300000"}, None, "adaptive"),
    "torch's default, cpu_threads=torch": ({"GOMP_SPINCOUNT": "300000"}, None, "torch"),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None, "adaptive"),
    "OMP_WAIT_POLICY=PASSIVE, cpu_threads=torch": ({"OMP_WAIT_POLICY": "PASSIVE"}, None, "torch"),
    "GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, None, "adaptive"),
    "1 thread": ({"GOMP_SPINCOUNT": "300000"}, 1, "torch"),
}
QUERY = "What is the capital of China?"
DOCUMENTS = [
    "Beijing is the capital of China and its political and cultural centre. " * 2,
    "Paris, on the Seine, is the capital and largest city of France. " * 2,
]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """In the fresh process: load, warm up, then time ``calls`` calls of the task."""
    import torch

    from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions
    from qwen3_core.testing import build_test_models

    folders = build_test_models(shape=spec["shape"])
    options = TransformersOptions(
        device="cpu", show_progress=False, cpu_threads=spec["cpu_threads"]
    )
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec["task"] == "rerank":
        reranker = Qwen3Reranker(folders.reranker, backend=options)

        def call(i: int) -> None:
            reranker.score(f"{QUERY} ({i})", DOCUMENTS)
    else:
        embedder = Qwen3Embedder(folders.embedding, backend=options)

        def call(i: int) -> None:
            embedder.embed_queries([f"{QUERY} ({i})"])

    for i in range(3):
        call(-i - 1)
    times = []
    cpu, start = time.process_time(), time.perf_counter()
    for i in range(spec["calls"]):
        began = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - began)
    wall = time.perf_counter() - start
    return {
        "median": statistics.median(times),
        "mean": wall / spec["calls"],
        "cpu": (time.process_time() - cpu) / wall,
        "threads": torch.get_num_threads(),
    }


def run(setting: str, task: str, args: argparse.Namespace, busy: int) -> dict[str, Any]:
    environment, threads, cpu_threads = SETTINGS[setting]
    spec = {
        "shape": args.shape,
        "task": task,
        "calls": args.calls,
        "threads": threads,
        "cpu_threads": cpu_threads,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    with background_load(busy):
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_busy", "--worker", json.dumps(spec)],
            cwd=REPO,
            env={**env, **environment},
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1]}
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description="small calls, quiet and on a busy machine")
    parser.add_argument("--shape", default="tiny", choices=["tiny", "small", "0.6b"])
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the engine")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per process")
    parser.add_argument("--tasks", nargs="*", default=["rerank", "embed"])
    parser.add_argument("--only", nargs="*", choices=list(SETTINGS), help="these settings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.busy < 1 or args.calls < 1:
        parser.error("--busy and --calls must be 1 or more")
    exit_on_sigterm()
    print(f"bench_busy: shape {args.shape}, {args.calls} calls; host {host()}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at start: {load}; running now: {running_processes()}", flush=True)
    rows = []
    for task in args.tasks:
        for setting in args.only or list(SETTINGS):
            quiet = run(setting, task, args, 0)
            loaded = run(setting, task, args, args.busy)
            rows.append((task, setting, quiet, loaded))
            print(f"  {task} {setting}: quiet {quiet}, busy {loaded}", flush=True)
    what = {"rerank": "rerank 1 query x 2 documents", "embed": "embed 1 query"}
    print(f"\n{args.busy} busy process{'es' if args.busy != 1 else ''}; ms per call")
    print(
        "| call | setting | quiet median | quiet mean | busy median | busy mean | "
        "busy / quiet (means) | quiet CPU % | busy CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for task, setting, quiet, loaded in rows:
        start = f"| {what[task]} | {setting} |"
        if "error" in quiet or "error" in loaded:
            print(f"{start} failed: {quiet.get('error') or loaded.get('error')} |")
            continue
        print(
            f"{start} {1000 * quiet['median']:.1f} | {1000 * quiet['mean']:.1f} | "
            f"{1000 * loaded['median']:.1f} | {1000 * loaded['mean']:.1f} | "
            f"{loaded['mean'] / quiet['mean']:.2f} | {100 * quiet['cpu']:.0f}% | "
            f"{100 * loaded['cpu']:.0f}% |"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
