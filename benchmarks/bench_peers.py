"""qwen3-rag against the CPU engines a user could run the same models on: ONNX Runtime,
OpenVINO and llama.cpp (llama-cpp-python), each in float32 and in its int8 form.

Every engine runs the same random checkpoint of the chosen shape, exported once for the peers
(``benchmarks.peers.export``), on the same token ids (made by qwen3-rag's tokenizer, checked
against ``Qwen3Embedder.tokenize_documents`` and ``Qwen3Reranker.tokenize``), each in a fresh
process with the same number of threads. Workloads: embedding 64 documents of 16-512 tokens;
reranking one query with 24 documents of 16-512 tokens (yes/no logits at the last position
of the canonical prompt).

Where an engine can batch in several ways, each way runs in its own process and the fastest
is its row (the others are listed under the table). Columns: tokens/s and its ratio to
qwen3-rag float32 of the same run; CPU use during the timed run (200% is both cores of two);
the process's peak resident set (its ``VmHWM``: ``getrusage``'s ``ru_maxrss`` carries the
driver's size over exec); cold start, from process start to the first
result on one short text (imports, tokenizer and load included, weights in the page cache),
the median over the timed runs and ``--cold-repeats`` more processes that stop there;
fidelity against qwen3-rag float32 on the whole workload. With ``--passes N`` each process
times the workload N times and keeps its fastest pass: on a host whose neighbours come and
go, the least disturbed one.

``--background-load N`` times each engine a second time, in the same mode and a fresh process,
while N busy processes of the benchmark's own (Python loops that only count:
``benchmarks.background``) share the cores, and adds a table of each engine's quiet time
against its busy time. The loops start before that process and stop when it ends (on an
error or Ctrl-C too); the quiet runs have none.

The peer engines are not dependencies of qwen3-rag: install them in an environment of their
own (docs/performance.md, "Peer engines"), then

    .venv-bench/bin/python -m benchmarks.bench_peers --shape small --scale 0.25   # minutes
    .venv-bench/bin/python -m benchmarks.bench_peers --shape 0.6b --scale 0.25 \
        --modes batch1 sorted padded     # 40 minutes on 2 busy cores; --scale 1 is ~4x
    .venv-bench/bin/python -m benchmarks.bench_peers --shape 0.6b --scale 0.25 \
        --modes batch1 --only qwen3-rag onnxruntime --background-load 1   # quiet and busy

``--only``, ``--precision``, ``--tasks`` and ``--modes`` narrow the run. ``--baseline-checkout
DIR`` adds qwen3-rag's rows once more, run from another checkout (``git worktree add DIR
COMMIT``): a change and what it replaced, measured in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.background import background_load, exit_on_sigterm
from benchmarks.common import REPO, make_texts, model_folders
from benchmarks.peers.export import artefact
from qwen3_core import prompts

INSTRUCTION = prompts.DEFAULT_INSTRUCTION
FIRST_QUERY = "What is the capital of China?"
FIRST_DOCUMENT = "Beijing is the capital of China."
BASELINE = "qwen3-rag"


@dataclass(frozen=True)
class Engine:
    name: str  # as --only spells it
    label: str
    precision: str  # "float32" or "int8"
    module: str  # in benchmarks.peers
    artefact: str | None  # from benchmarks.peers.export; None: the checkpoint itself
    modes: tuple[str, ...]
    package: str  # the import that says whether it is installed
    options: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # set for its worker process


ENGINES = (
    Engine("qwen3-rag", "qwen3-rag", "float32", "qwen3_rag", None, ("default",), "torch"),
    # torch's own wait (libgomp spins 300,000 rounds before it sleeps), as in a program that
    # loaded torch before qwen3-rag; the "qwen3-rag" row waits passively (import qwen3_core).
    Engine(
        "qwen3-rag-spin", "qwen3-rag, torch's default wait", "float32", "qwen3_rag", None,
        ("default",), "torch", environment={"GOMP_SPINCOUNT": "300000"},
    ),
    # The same, with torch's thread count kept as set whatever the other processes take.
    Engine(
        "qwen3-rag-spin-fixed", "qwen3-rag, torch's default wait, cpu_threads=torch", "float32",
        "qwen3_rag", None, ("default",), "torch", {"cpu_threads": "torch"},
        environment={"GOMP_SPINCOUNT": "300000"},
    ),
    Engine(
        "qwen3-rag-openvino", "qwen3-rag backend=openvino", "float32", "qwen3_rag", None,
        ("default",), "openvino", {"backend": "openvino"},
    ),
    Engine(
        "onnxruntime", "ONNX Runtime", "float32", "onnxruntime_cpu", "onnx-fp32",
        ("batch1", "sorted", "padded"), "onnxruntime",
    ),
    Engine(
        "openvino", "OpenVINO", "float32", "openvino_cpu", "openvino-fp32",
        ("batch1", "sorted"), "openvino",
    ),
    Engine(
        "llama.cpp", "llama.cpp f32", "float32", "llama_cpp_cpu", "gguf-f32",
        ("batch1", "packed"), "llama_cpp",
    ),
    Engine(
        "qwen3-rag", "qwen3-rag int8", "int8", "qwen3_rag", None, ("default",), "torch",
        {"quantization": "int8"},
    ),
    Engine(
        "onnxruntime", "ONNX Runtime quantize_dynamic", "int8", "onnxruntime_cpu", "onnx-int8",
        ("batch1", "sorted", "padded"), "onnxruntime",
    ),
    Engine(
        "openvino", "OpenVINO NNCF int8 weights", "int8", "openvino_cpu", "openvino-int8",
        ("batch1", "sorted"), "openvino",
    ),
    Engine(
        "llama.cpp", "llama.cpp q8_0", "int8", "llama_cpp_cpu", "gguf-q8_0",
        ("batch1", "packed"), "llama_cpp",
    ),
)  # fmt: skip


@dataclass
class Run:
    mode: str
    seconds: float = float("nan")
    cpu_seconds: float = float("nan")
    peak_rss: int = 0
    cold: float = float("nan")
    outputs: np.ndarray | None = None
    error: str = ""
    passes: list[float] = field(default_factory=list)


@dataclass
class Row:
    engine: Engine
    runs: list[Run]
    not_run: str = ""
    busy: Run | None = None
    """With ``--background-load``: the best quiet mode, timed again beside the busy loops."""
    colds: list[float] = field(default_factory=list)
    """Every cold start measured for the engine: its timed runs' and the extra ones'."""

    @property
    def cold(self) -> float:
        return statistics.median(self.colds) if self.colds else float("nan")

    @property
    def best(self) -> Run | None:
        done = [r for r in self.runs if not r.error]
        return min(done, key=lambda r: r.seconds) if done else None


# ---------------------------------------------------------------- running one engine


def _warm_page_cache(paths: list[Path]) -> None:
    """Read the files an engine loads, so every engine starts from memory alike."""
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            with open(file, "rb") as handle:
                while handle.read(1 << 24):
                    pass


def run_engine(
    engine: Engine,
    mode: str,
    kind: str,
    folder: Path,
    workload: Path,
    threads: int,
    scratch: Path,
    cold_only: bool = False,
    passes: int = 1,
    busy: int = 0,
) -> Run:
    """One fresh worker process for ``engine`` in ``mode``, timing ``passes`` passes over the
    workload; with ``cold_only``, it stops after the first result (the cold start). ``busy``
    CPU-bound processes run beside it, from before it starts until it ends."""
    target = artefact(folder, engine.artefact) if engine.artefact else None
    first_text = FIRST_DOCUMENT
    if kind == "reranker":
        body = prompts.rerank_body_text(INSTRUCTION, FIRST_QUERY, FIRST_DOCUMENT)
        first_text = prompts.RERANK_PREFIX + body + prompts.RERANK_SUFFIX
    _warm_page_cache([folder] if target is None else [folder / "tokenizer.json", target.parent])
    name = engine.label.replace(" ", "_").replace("=", "-")
    spec_path = scratch / f"{kind}-{name}-{mode}{'-busy' if busy else ''}.json"
    spec = {
        "engine": engine.module,
        "kind": kind,
        "mode": mode,
        "threads": threads,
        "model_folder": str(folder),
        "artefact": None if target is None else str(target),
        "workload": str(workload),
        "first_query": FIRST_QUERY,
        "first_document": FIRST_DOCUMENT,
        "first_text": first_text,
        "cold_only": cold_only,
        "passes": passes,
        **engine.options,
    }
    if engine.options.get("backend") == "openvino":  # converted in this run, not before
        spec["cache_folder"] = str(scratch / "openvino-cache")
    log = spec_path.with_suffix(".log")
    with open(log, "w") as output, background_load(busy):
        spec["launched"] = time.monotonic()
        spec_path.write_text(json.dumps(spec))
        subprocess.run(
            [sys.executable, "-m", "benchmarks.peers.worker", str(spec_path)],
            cwd=engine.options.get("checkout", REPO),  # its qwen3_core is the one imported
            env={**os.environ, **engine.environment},
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    result_path = spec_path.with_suffix(".result.json")
    if not result_path.exists():
        tail = log.read_text()[-300:].strip().splitlines()
        return Run(mode, error=f"the worker died: {tail[-1] if tail else '?'}")
    result = json.loads(result_path.read_text())
    if "error" in result:
        return Run(mode, error=result["error"])
    if cold_only:
        return Run(mode, cold=result["cold"])
    if result.get("ids_match") is False:
        return Run(mode, error="the workload's ids differ from the engine's own tokenize")
    return Run(
        mode,
        seconds=result["seconds"],
        cpu_seconds=result["cpu_seconds"],
        peak_rss=result["peak_rss"],
        cold=result["cold"],
        outputs=np.load(spec_path.with_suffix(".npy")).astype(np.float64),
        passes=result["passes"],
    )


# ---------------------------------------------------------------- workloads


def workloads(folders: Any, scale: float, scratch: Path) -> dict[str, tuple[Path, int, int]]:
    """kind: (workload file, items, tokens). The ids are those of qwen3-rag's public
    ``Qwen3Embedder.tokenize_documents`` and ``Qwen3Reranker.tokenize``; engines opened on a
    server backend that is never called, so no weights are loaded here."""
    from transformers import AutoTokenizer

    from qwen3_core import Qwen3Embedder, Qwen3Reranker, ServerOptions

    unused = ServerOptions(base_url="http://127.0.0.1:9")
    out: dict[str, tuple[Path, int, int]] = {}
    hf_tokenizer = AutoTokenizer.from_pretrained(folders.embedding)
    documents = make_texts(hf_tokenizer, max(4, int(64 * scale)), 16, 512, seed=0)
    ids = Qwen3Embedder(folders.embedding, backend=unused).tokenize_documents(documents)
    out["embedding"] = _write(scratch / "embedding.workload", {"documents": documents}, ids)
    query = make_texts(hf_tokenizer, 1, 8, 24, seed=11)[0]
    documents = make_texts(hf_tokenizer, max(4, int(24 * scale)), 16, 512, seed=21)
    ids = Qwen3Reranker(folders.reranker, backend=unused).tokenize(query, documents)
    payload = {"query": query, "documents": documents}
    out["reranker"] = _write(scratch / "reranker.workload", payload, ids)
    return out


def _write(path: Path, payload: dict[str, Any], ids: list[np.ndarray]) -> tuple[Path, int, int]:
    lists = [[int(i) for i in s] for s in ids]
    path.write_text(json.dumps({**payload, "ids": lists}))
    return path, len(lists), sum(len(s) for s in lists)


# ---------------------------------------------------------------- fidelity and the table


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def fidelity(kind: str, outputs: np.ndarray, reference: np.ndarray | None) -> str:
    if reference is None:
        return "-"
    if kind == "embedding":
        return f"{float(np.min(np.sum(outputs * reference, axis=1))):.4f}"
    worst = float(np.max(np.abs(outputs - reference)))
    return f"{worst:.4f} | {spearman(outputs, reference):.3f}"


def print_table(kind: str, rows: list[Row], items: int, tokens: int, threads: int) -> None:
    what = "Embedding" if kind == "embedding" else "Reranking (1 query)"
    print(f"\n{what}: {items} documents, {tokens} tokens, {threads} threads per engine")
    base = next((r.best for r in rows if r.engine.label == BASELINE), None)
    reference = None if base is None else base.outputs
    check = "worst cosine" if kind == "embedding" else "worst abs dP(yes) | Spearman"
    header = (
        "| precision | engine | mode | s | tokens/s | x qwen3-rag float32 | CPU % | "
        f"peak RSS MiB | cold start s | {check} |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        engine, best = row.engine, row.best
        start = f"| {engine.precision} | {engine.label} |"
        if best is None:
            reason = row.not_run or "; ".join(f"{r.mode}: {r.error}" for r in row.runs)
            print(f"{start} not run: {reason} |")
            continue
        ratio = f"{base.seconds / best.seconds:.2f}" if base is not None else "-"
        assert best.outputs is not None
        print(
            f"{start} {best.mode} | {best.seconds:.2f} | {tokens / best.seconds:,.0f} | "
            f"{ratio} | {100 * best.cpu_seconds / best.seconds:.0f}% | "
            f"{best.peak_rss / 2**20:,.0f} | {row.cold:.1f} | "
            f"{fidelity(kind, best.outputs, reference)} |"
        )
    for row in rows:
        if len(row.runs) > 1:
            modes = ", ".join(
                f"{r.mode} failed ({r.error})"
                if r.error
                else f"{r.mode} {tokens / r.seconds:,.0f} tokens/s ({r.peak_rss / 2**20:,.0f} MiB)"
                for r in row.runs
            )
            print(f"- {row.engine.label} ({row.engine.precision}): {modes}")


def print_busy_table(kind: str, rows: list[Row], tokens: int, busy: int) -> None:
    """Each engine's best quiet mode against the same mode beside ``busy`` busy processes."""
    loops = f"{busy} busy process{'es' if busy != 1 else ''}"
    print(f"\n{'Embedding' if kind == 'embedding' else 'Reranking'}: quiet against {loops}")
    print(
        "| precision | engine | mode | quiet s | busy s | busy / quiet | quiet tokens/s | "
        "busy tokens/s | quiet CPU % | busy CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        quiet, loaded = row.best, row.busy
        if quiet is None or loaded is None:
            continue
        start = f"| {row.engine.precision} | {row.engine.label} | {quiet.mode} |"
        if loaded.error:
            print(f"{start} {quiet.seconds:.2f} | failed: {loaded.error} |")
            continue
        print(
            f"{start} {quiet.seconds:.2f} | {loaded.seconds:.2f} | "
            f"{loaded.seconds / quiet.seconds:.2f} | {tokens / quiet.seconds:,.0f} | "
            f"{tokens / loaded.seconds:,.0f} | {_cpu(quiet)} | {_cpu(loaded)} |"
        )


def _cpu(run: Run) -> str:
    share = run.cpu_seconds / run.seconds
    return "-" if math.isnan(share) else f"{100 * share:.0f}%"


# ---------------------------------------------------------------- main


def run_task(
    kind: str,
    engines: list[Engine],
    missing: set[str],
    folder: Path,
    workload: Path,
    args: argparse.Namespace,
    scratch: Path,
) -> list[Row]:
    """Every engine in each of its batching modes, one fresh process each."""
    rows = []
    for engine in engines:
        if engine.package in missing:
            rows.append(Row(engine, [], f"{engine.package} is not installed"))
            continue
        if engine.options.get("backend") == "openvino":
            # Its first load converts the checkpoint (once per machine): timed apart.
            first = run_engine(engine, "default", kind, folder, workload, args.threads, scratch,
                               cold_only=True)  # fmt: skip
            print(f"  {kind} {engine.label} first load: {first.error or f'{first.cold:.1f} s'}")
        runs = []
        for mode in engine.modes:
            if mode != "default" and args.modes and mode not in args.modes:
                continue
            run = run_engine(
                engine, mode, kind, folder, workload, args.threads, scratch, passes=args.passes
            )
            state = run.error or f"{run.seconds:.2f} s, cold start {run.cold:.1f} s"
            if len(run.passes) > 1:
                state += f" (passes: {' '.join(f'{p:.2f}' for p in run.passes)} s)"
            print(f"  {kind} {engine.label} {mode}: {state}", flush=True)
            runs.append(run)
        colds = [r.cold for r in runs if not r.error]
        for _ in range(args.cold_repeats if colds else 0):
            extra = run_engine(
                engine, runs[0].mode, kind, folder, workload, args.threads, scratch, cold_only=True
            )
            if not extra.error:
                colds.append(extra.cold)
        if len(colds) > 1:
            print(f"  {kind} {engine.label} cold starts: {' '.join(f'{c:.1f}' for c in colds)}")
        row = Row(engine, runs, colds=colds)
        best = row.best
        if args.background_load and best is not None:
            row.busy = run_engine(
                engine, best.mode, kind, folder, workload, args.threads, scratch,
                passes=args.passes, busy=args.background_load,
            )  # fmt: skip
            state = row.busy.error or f"{row.busy.seconds:.2f} s"
            print(f"  {kind} {engine.label} {best.mode} beside the busy processes: {state}")
        rows.append(row)
    return rows


def host() -> str:
    """The CPU's model name and its SIMD flags of interest."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    name, flags = "?", set()
    for line in text.splitlines():
        if line.startswith("Model name:"):
            name = line.split(":", 1)[1].strip()
        if line.startswith("Flags:"):
            flags = set(line.split(":", 1)[1].split())
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]
    return f"{name}, {os.cpu_count()} CPUs; " + " ".join(f for f in wanted if f in flags)


def _baseline_engines(engines: list[Engine], checkout: Path) -> list[Engine]:
    """qwen3-rag's rows among ``engines`` again, run from ``checkout``."""
    if not (checkout / "qwen3_core" / "__init__.py").is_file():
        raise SystemExit(f"--baseline-checkout {checkout} is not a checkout of qwen3-rag")
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return [
        replace(e, label=f"{e.label} @{commit}", options={**e.options, "checkout": str(checkout)})
        for e in engines
        if e.module == "qwen3_rag"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="qwen3-rag against peer CPU engines")
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "0.6b"])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the workloads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only", nargs="*", choices=sorted({e.name for e in ENGINES}), help="these engines"
    )
    parser.add_argument("--precision", nargs="*", choices=["float32", "int8"])
    parser.add_argument("--modes", nargs="*", help="only these batching modes of the peers")
    parser.add_argument("--tasks", nargs="*", default=["embedding", "reranker"])
    parser.add_argument(
        "--cold-repeats",
        type=int,
        default=2,
        help="extra processes per engine that only time the cold start (the table has the "
        "median of these and the timed runs')",
    )
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        help="another checkout of qwen3-rag (git worktree add DIR COMMIT) whose qwen3-rag rows "
        "run too, labelled with its commit",
    )
    parser.add_argument(
        "--background-load",
        type=int,
        default=0,
        metavar="N",
        help="time each engine's best mode again while N busy processes of the benchmark's "
        "own share the cores, and print each engine's quiet time against its busy time",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=1,
        help="timed passes over the workload in each process; the fastest is the row's (the "
        "least disturbed by other load on the host)",
    )
    args = parser.parse_args()
    if args.cold_repeats < 0:
        parser.error(f"--cold-repeats must be 0 or more, not {args.cold_repeats}")
    if args.passes < 1:
        parser.error(f"--passes must be 1 or more, not {args.passes}")
    if args.background_load < 0:
        parser.error(f"--background-load must be 0 or more, not {args.background_load}")
    exit_on_sigterm()  # so that the busy processes are stopped on the way out

    engines = [
        e
        for e in ENGINES
        if (not args.only or e.name in args.only or e.label == BASELINE)
        and (not args.precision or e.precision in args.precision or e.label == BASELINE)
    ]
    if args.baseline_checkout is not None:
        engines += _baseline_engines(engines, args.baseline_checkout)
    missing = {e.package for e in engines if importlib.util.find_spec(e.package) is None}
    folders = model_folders(args.shape)
    needed = [e.artefact for e in engines if e.artefact and e.package not in missing]
    if needed:  # once per model; a process of its own (torch's export is memory-hungry)
        subprocess.run(
            [sys.executable, "-m", "benchmarks.peers.export", "--shape", args.shape,
             "--only", *dict.fromkeys(needed)],
            cwd=REPO,
            check=True,
        )  # fmt: skip
    print(f"peers: shape {args.shape}, scale {args.scale}; host {host()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch_name:
        scratch = Path(scratch_name)
        loads = workloads(folders, args.scale, scratch)
        for kind in args.tasks:
            folder = Path(folders.embedding if kind == "embedding" else folders.reranker)
            workload, items, tokens = loads[kind]
            rows = run_task(kind, engines, missing, folder, workload, args, scratch)
            print_table(kind, rows, items, tokens, args.threads)
            if args.background_load:
                print_busy_table(kind, rows, tokens, args.background_load)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
