"""Resident memory of ``backend="openvino"``: its first load, which converts the checkpoint,
and a later load from the conversion cache, each in a fresh process.

Each process loads a ``Qwen3Embedder`` with ``OpenVINOOptions(cache_folder=...)`` on a cache
folder of this run (the first process finds it empty), then embeds one batch (16 documents of
about 200 tokens, as ``bench_memory``). It reports its resident set after the load and after
the batch, split into anonymous memory (what the process allocated: OpenVINO's packed
weights, buffers) and file pages (mapped files: the converted weights, libraries), and its
peak (``VmHWM``). ``--baseline-checkout DIR`` runs the same from another checkout of
qwen3-rag (``git worktree add DIR COMMIT``) on a cache folder of its own, in the same run.

    python -m benchmarks.bench_openvino_memory --shape 0.6b
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_memory import batch_texts
from benchmarks.bench_peers import host
from benchmarks.common import REPO, model_folders

_PROCESS = """
import json, sys, time
from qwen3_core import Qwen3Embedder
from qwen3_core.backend_options import OpenVINOOptions

def memory():
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                found[key] = int(value.split()[0]) * 1024
    return found

folder, cache, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
started = time.perf_counter()
engine = Qwen3Embedder(folder, backend=OpenVINOOptions(show_progress=False, cache_folder=cache))
seconds = time.perf_counter() - started
loaded = memory()
engine.embed_documents(texts)
print(json.dumps({"load_s": seconds, "load": loaded, "batch": memory()}))
"""


def one_run(checkout: Path, folder: str, cache: Path, texts: list[str]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}  # its qwen3_core is the one imported
    run = subprocess.run(
        [sys.executable, "-c", _PROCESS, folder, str(cache), json.dumps(texts)],
        capture_output=True,
        text=True,
        cwd=checkout,
        env=env,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"the load failed:\n{run.stderr[-2000:]}")
    answer: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description="resident memory of backend='openvino'")
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "0.6b"])
    parser.add_argument("--baseline-checkout", type=Path, help="another checkout to run too")
    args = parser.parse_args()
    checkouts = {"this checkout": REPO}
    if args.baseline_checkout is not None:
        commit = subprocess.run(
            ["git", "-C", str(args.baseline_checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        checkouts[f"@{commit}"] = args.baseline_checkout
    folder = str(model_folders(args.shape).embedding)
    texts = batch_texts()
    print(f"backend='openvino' memory: shape {args.shape}; host {host()}")
    mib = 2**20
    print(
        "| qwen3-rag | load | load s | RSS after load MiB | anonymous | file | peak after load "
        "MiB | RSS after the batch MiB | anonymous | file | peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-openvino-memory-") as scratch:
        for name, checkout in checkouts.items():
            cache = Path(scratch) / name.replace(" ", "-")
            for load in ("first (converts)", "later (from the cache)"):
                got = one_run(checkout, folder, cache, texts)
                after, batch = got["load"], got["batch"]
                assert isinstance(after, dict) and isinstance(batch, dict)
                print(
                    f"| {name} | {load} | {got['load_s']:.1f} | {after['VmRSS'] / mib:,.0f} | "
                    f"{after['RssAnon'] / mib:,.0f} | {after['RssFile'] / mib:,.0f} | "
                    f"{after['VmHWM'] / mib:,.0f} | {batch['VmRSS'] / mib:,.0f} | "
                    f"{batch['RssAnon'] / mib:,.0f} | {batch['RssFile'] / mib:,.0f} | "
                    f"{batch['VmHWM'] / mib:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
