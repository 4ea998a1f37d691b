"""The GPU suite: the GPU tests, the 0.6B-shape benchmarks in bfloat16 and the shared-prefix
measurement, in one command and one markdown table.

    make bench-gpu                   # python -m benchmarks.gpu_suite; writes gpu-suite.md
    python -m benchmarks.gpu_suite --device cpu --shape tiny --scale 0.05   # smoke test

Steps, each with its budget on an H100-class GPU (a spawned process per method: about 10 s of
start-up and loading, then the timed workload):

====  ===========================================================================  ======
step  what                                                                         budget
====  ===========================================================================  ======
0     the random 0.6B-shape models, built once into the test-model cache, and the   45 s
      workloads (exact token lengths)
1     ``pytest tests/test_gpu.py`` (skips without CUDA)                             45 s
2     embedding 2048 documents of 16-512 tokens: qwen3-rag, sentence-transformers,  60 s
      the model card's loop
3     reranking 32 queries x 32 documents of 512-1024 tokens: qwen3-rag (shared     100 s
      prefix), qwen3-rag (whole prompts), sentence-transformers' CrossEncoder,
      the model card's loop
4     reranking 2 queries x 512 documents of 64-512 tokens (many documents per      60 s
      query): the same four
5     vLLM, where installed: the embedding workload and the 512-1024 one            150 s
====  ===========================================================================  ======

In all 460 s, under 8 minutes. ``--budget`` (480 s on a GPU) is a hard stop: each method is
killed at its own cap (90 s; vLLM 150 s; the tests 120 s) or at the end of the budget,
whichever comes first, and a method that cannot start in the time left is a row that says so,
so the suite always ends and writes its table. vLLM goes last: optional, slowest to start.

The shared-prefix rows (3 and 4) decide the CUDA default of ``TransformersOptions(
share_prefix=None)``: ``qwen3_core.devices.SHARE_PREFIX_DEFAULTS``. The suite prints which is
faster, by how much, and what that entry should be.

With ``--device cpu`` the CUDA-only parts (the GPU tests, which skip; vLLM; the targets) are
rows with a note, so the whole suite runs end to end on any machine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks import bench_embed, bench_rerank
from benchmarks.common import (
    REPO,
    Measurement,
    base_arguments,
    make_texts,
    measure,
    model_folders,
)

EMBED_TARGET = 2.0
"""qwen3-rag embeds at least this many times as fast as sentence-transformers (CUDA)."""
RERANK_TARGET = 250_000
"""qwen3-rag reranks 512-1024-token documents at this many prompt tokens/s or more (CUDA)."""

BUDGET_SECONDS = 480.0
METHOD_CAP = 90.0  # seconds for one spawned method, loading included
VLLM_CAP = 150.0  # vLLM compiles and captures CUDA graphs before its first batch
PYTEST_CAP = 120.0
MIN_START = 20.0  # a method is not started with less time than this left
CPU_CARD_BATCH = 2

ST = "sentence-transformers"
CARD = "model-card loop"
SHARED = "qwen3-rag"  # bench_rerank's qwen3-rag method shares the prefix explicitly
WHOLE = "qwen3-rag, whole prompts"
VLLM = "qwen3-rag, vllm backend"

EMBED = "embed 16-512"
RERANK_LONG = "rerank 512-1024"
RERANK_MANY = "rerank many docs/query"


@dataclass
class Workload:
    name: str
    description: str
    path: str
    data_key: str  # "texts" or "pairs": the setup functions' argument
    data: list[Any]
    tokens: int


@dataclass(frozen=True)
class Method:
    name: str
    target: str  # setup function, "module.function": it loads the model, returns the workload
    extra: dict[str, Any] = field(default_factory=dict)  # further keyword arguments
    vllm: bool = False


@dataclass
class Row:
    method: str
    workload: str
    measurement: Measurement | None = None
    tokens: int = 0
    note: str = ""
    target: str = ""

    @property
    def seconds(self) -> float:
        return self.measurement.seconds if self.measurement is not None else math.nan

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan


# ---------------------------------------------------------------- sentence-transformers reranker


def cross_encoder_folder(reranker: Path) -> Path:
    """The reranker in the layout sentence-transformers saves a causal-LM cross-encoder in
    (its LogitScore module scores yes against no), built once beside the test models."""
    from qwen3_core.testing.cache import build_once
    from qwen3_core.testing.variants import VARIANTS_VERSION, sentence_transformers_reranker_copy

    folder = reranker.parent.parent / f"{reranker.parent.name}-cross-encoder-v{VARIANTS_VERSION}"

    def write(staging: Path) -> None:
        sentence_transformers_reranker_copy(reranker, staging)

    build_once(folder, write)
    return folder


def setup_cross_encoder(path: str, pairs: list[tuple[str, str]], device: str) -> Any:
    """sentence-transformers' CrossEncoder on the same prompts: it joins each (head, tail)
    pair as it is, so the head carries the prefix and query and the tail the document and the
    suffix; left padding, batches of 16 as the model card's loop."""
    from sentence_transformers import CrossEncoder

    from qwen3_core import prompts

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = CrossEncoder(path, device=device, max_length=8192, model_kwargs={"dtype": dtype})
    inputs = [
        (
            prompts.RERANK_PREFIX + prompts.rerank_head_text(bench_rerank.INSTRUCTION, query),
            prompts.rerank_document_text(document) + prompts.RERANK_SUFFIX,
        )
        for query, document in pairs
    ]

    def run() -> Any:
        return model.predict(inputs, batch_size=bench_rerank.MODEL_CARD_BATCH)

    run.warmup = lambda: model.predict(inputs[:2])  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------- steps


def run_gpu_tests(timeout: float | None) -> Row:
    """``pytest tests/test_gpu.py`` in a child process; the counts from its JUnit report."""
    row = Row("pytest tests/test_gpu.py", "GPU tests")
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.xml"
        command = [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-q"]
        command += ["-p", "no:cacheprovider", f"--junitxml={report}"]
        print("step 1: " + " ".join(command[2:5]), flush=True)
        try:
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            row.note = f"stopped at its {timeout:.0f} s budget"
            row.target = "missed"
            return row
        if not report.exists():
            row.note = f"pytest exited with {done.returncode} and no report"
            print(done.stdout[-2000:] + done.stderr[-2000:])
            row.target = "missed"
            return row
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for suite in ElementTree.parse(report).getroot().iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
    failed = counts["failures"] + counts["errors"]
    passed = counts["tests"] - failed - counts["skipped"]
    row.note = f"{passed} passed, {failed} failed, {counts['skipped']} skipped"
    if not torch.cuda.is_available():
        row.note += " (no CUDA here)"
        row.target = "n/a (no CUDA)"
    else:
        row.target = "all pass: " + ("met" if failed == 0 and passed > 0 else "missed")
    print(f"  {row.note}", flush=True)
    return row


def workloads(shape: str, scale: float) -> dict[str, Workload]:
    """The three workloads, with their token counts (the embedding model's inputs with
    ``<|endoftext|>``; the reranker's whole prompts, as the engine builds them)."""
    from transformers import AutoTokenizer

    from qwen3_core.tokenization import LiteralTokenizer, RerankTokenizer

    folders = model_folders(shape)
    embed_tokenizer = AutoTokenizer.from_pretrained(str(folders.embedding))
    texts = make_texts(embed_tokenizer, max(4, int(2048 * scale)), 16, 512, seed=0)
    embed_tokens = sum(len(embed_tokenizer(t).input_ids) for t in texts)
    found = {
        EMBED: Workload(
            EMBED,
            f"{len(texts)} documents of 16-512 tokens",
            str(folders.embedding),
            "texts",
            texts,
            embed_tokens,
        )
    }
    tokenizer = AutoTokenizer.from_pretrained(str(folders.reranker))
    prompt_tokens = RerankTokenizer(LiteralTokenizer.from_folder(folders.reranker), 8192)
    for name, n_queries, n_docs, low, high in [
        (RERANK_LONG, 32, 32, 512, 1024),
        (RERANK_MANY, 2, 512, 64, 512),
    ]:
        n_docs = max(2, int(n_docs * scale))
        queries = make_texts(tokenizer, n_queries, 8, 24, seed=10 + n_queries)
        docs = make_texts(tokenizer, n_queries * n_docs, low, high, seed=20 + n_queries)
        pairs = [(queries[i // n_docs], d) for i, d in enumerate(docs)]
        encoded = prompt_tokens.encode(pairs, bench_rerank.INSTRUCTION).prompts
        found[name] = Workload(
            name,
            f"{n_queries} queries x {n_docs} documents of {low}-{high} tokens "
            f"({len(encoded[0].head)} prompt tokens shared per query)",
            str(folders.reranker),
            "pairs",
            pairs,
            sum(len(p) for p in encoded),
        )
    return found


def plan(cross_encoder: str, device: str) -> list[tuple[str, Method]]:
    """(workload, method) in the order they run: vLLM last (optional, slowest to start)."""
    embed = [Method(name, bench_embed.METHODS[name]) for name in ("qwen3-rag", ST, CARD)]
    # On CPU the card's float32 logits over the whole vocabulary for 16 prompts of ~1,100
    # tokens take about 11 GB: smaller batches keep the smoke test within a laptop's memory.
    card = {"batch_size": CPU_CARD_BATCH} if device == "cpu" else {}
    rerank = [
        Method(SHARED, bench_rerank.METHODS[SHARED]),
        Method(WHOLE, bench_rerank.METHODS[WHOLE]),
        Method(ST, "benchmarks.gpu_suite.setup_cross_encoder", {"path": cross_encoder}),
        Method(CARD, bench_rerank.METHODS[CARD], card),
    ]
    steps = [(EMBED, m) for m in embed]
    steps += [(RERANK_LONG, m) for m in rerank] + [(RERANK_MANY, m) for m in rerank]
    # Prompts reach about 1,130 tokens on the 512-1024 workload: vLLM reserves room for them.
    steps += [
        (EMBED, Method(VLLM, bench_embed.METHODS[VLLM], vllm=True)),
        (RERANK_LONG, Method(VLLM, bench_rerank.METHODS[VLLM], {"max_length": 2048}, vllm=True)),
    ]
    return steps


def run_methods(
    steps: Sequence[tuple[str, Method]],
    found: dict[str, Workload],
    device: str,
    deadline: float,
    only: Sequence[str] | None,
) -> list[Row]:
    vllm_installed = importlib.util.find_spec("vllm") is not None
    rows = []
    for workload_name, method in steps:
        workload = found[workload_name]
        row = Row(method.name, workload_name, tokens=workload.tokens)
        rows.append(row)
        if only and method.name not in only:
            row.note = "not asked for (--only)"
            continue
        if method.vllm and device == "cpu":
            row.note = "skipped: CUDA only in this suite"
            continue
        if method.vllm and not vllm_installed:
            row.note = "skipped: vLLM is not installed"
            continue
        left = deadline - time.monotonic()
        if left < MIN_START:
            row.note = "not run: the suite's time budget was spent"
            continue
        # Without a budget (CPU) nothing is capped: the caps are sized for the GPU.
        cap = min(VLLM_CAP if method.vllm else METHOD_CAP, left) if math.isfinite(left) else None
        kwargs = {"path": workload.path, workload.data_key: workload.data, "device": device}
        print(f"{workload_name}: {method.name}", flush=True)
        row.measurement = measure(
            method.name, method.target, device, kwargs | method.extra, timeout=cap
        )
        row.note = row.measurement.note
        if method.vllm and not row.note:
            row.note = "memory: vLLM's own process, not counted"
        if "batch_size" in method.extra and not row.note:
            row.note = f"batches of {method.extra['batch_size']} (memory)"
    return rows


# ---------------------------------------------------------------- results


def _ratio(row: Row, base: Row | None) -> float:
    if base is None or not (row.seconds > 0 and base.seconds > 0):
        return math.nan
    return base.seconds / row.seconds


def mark_targets(rows: list[Row], device: str) -> None:
    """The two throughput targets, on the rows of the transformers backend (the default)."""
    by_key = {(r.workload, r.method): r for r in rows}
    for row in rows:
        if row.workload == EMBED and row.method == "qwen3-rag":
            label = f">= {EMBED_TARGET:g}x {ST}"
            ratio = _ratio(row, by_key.get((EMBED, ST)))
            met = ratio >= EMBED_TARGET
        elif row.workload == RERANK_LONG and row.method in (SHARED, WHOLE):
            label = f">= {RERANK_TARGET // 1000}k tokens/s"
            met = row.rate >= RERANK_TARGET
        else:
            continue
        if device == "cpu":
            row.target = f"{label}: n/a on CPU"
        elif math.isnan(row.seconds):
            row.target = f"{label}: not measured"
        else:
            row.target = f"{label}: {'met' if met else 'missed'}"


def share_prefix_verdict(rows: list[Row], device: str, decisive: bool) -> list[str]:
    """Which is faster on this device, shared prefix or whole prompts, and, where the run is
    ``decisive`` (the 0.6B shape, full workloads), what the default for its type should be."""
    from qwen3_core.devices import SHARE_PREFIX_DEFAULTS

    device_type = device.split(":")[0]
    current = SHARE_PREFIX_DEFAULTS.get(device_type, True)
    by_key = {(r.workload, r.method): r for r in rows}
    lines = [f"Shared prefix against whole prompts ({device_type}, reranking):", ""]
    ratios = []
    for workload in (RERANK_LONG, RERANK_MANY):
        shared, whole = by_key.get((workload, SHARED)), by_key.get((workload, WHOLE))
        ratio = _ratio(shared, whole) if shared is not None else math.nan
        if math.isnan(ratio):
            lines.append(f"- {workload}: not measured")
            continue
        ratios.append(ratio)
        faster = "shared prefix" if ratio >= 1 else "whole prompts"
        lines.append(
            f"- {workload}: {faster} faster; shared prefix runs at {ratio:.2f}x the speed "
            "of whole prompts"
        )
    if not ratios:
        lines += ["", "Default: not measured; the entry stays as it is."]
        return lines
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    # One run of each: within 3% is a tie, and a tie keeps the current entry.
    if abs(mean - 1) < 0.03:
        should = current
        why = f"a tie within noise: geometric mean {mean:.2f}x"
    else:
        should = mean > 1
        why = f"geometric mean {mean:.2f}x"
    entry = f"SHARE_PREFIX_DEFAULTS[{device_type!r}] in qwen3_core/devices.py"
    change = "keep it" if should == current else f"change it to {should}"
    if decisive:
        verdict = f"Default for {device_type}: share_prefix={should} ({why}); "
        verdict += f"{entry} is {current}: {change}."
    else:
        verdict = f"This run favours share_prefix={should} ({why}) but is no evidence for {entry} "
        verdict += f"(now {current}): that is decided on the 0.6B shape with --scale 1."
    return [*lines, "", verdict]


def _versions(device: str) -> list[str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        gpu = f"{torch.cuda.get_device_name(index)} (compute capability {major}.{minor})"
    else:
        gpu = f"none: run on {device} ({platform.processor() or platform.machine()}"
        gpu += f", {torch.get_num_threads()} threads)"
    return [
        f"- GPU: {gpu}",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, transformers "
        f"{version('transformers')}, sentence-transformers {version('sentence-transformers')}, "
        f"vLLM {version('vllm')}",
    ]


def _number(value: float, form: str) -> str:
    return "—" if math.isnan(value) else format(value, form)


def markdown(
    rows: list[Row],
    pytest_row: Row,
    found: dict[str, Workload],
    args: Any,
    wall: float,
) -> str:
    dtype = "float32" if args.device == "cpu" else "bfloat16"
    memory = "peak GPU MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    lines = [
        "# GPU suite",
        "",
        *_versions(args.device),
        f"- {args.shape} shape (random weights), {dtype}, scale {args.scale:g}; "
        f"{wall:.0f} s in all",
        "",
        "Workloads:",
        "",
        *(f"- {w.name}: {w.description}; {w.tokens:,} tokens" for w in found.values()),
        "",
        f"| method | workload | tokens/s | x {ST} | x {CARD} | {memory} | target | note |",
        "|---|---|---:|---:|---:|---:|---|---|",
        f"| {pytest_row.method} | {pytest_row.workload} | — | — | — | — | "
        f"{pytest_row.target} | {pytest_row.note} |",
    ]
    by_key = {(r.workload, r.method): r for r in rows}
    for workload in found:
        for row in (r for r in rows if r.workload == workload):
            st = _ratio(row, by_key.get((workload, ST)))
            card = _ratio(row, by_key.get((workload, CARD)))
            peak = math.nan
            if row.measurement is not None and row.rate > 0 and row.method != VLLM:
                peak = row.measurement.peak_extra_bytes / 2**20
            name = row.method
            if row.method == SHARED and workload != EMBED:
                name += " (shared prefix)"
            lines.append(
                f"| {name} | {workload} | {_number(row.rate, ',.0f')} | {_number(st, '.2f')} | "
                f"{_number(card, '.2f')} | {_number(peak, ',.0f')} | {row.target or '—'} | "
                f"{row.note.replace('|', '/')} |"
            )
    lines += [
        "",
        f"tokens/s: every input token of the workload over the timed call (one call, after a "
        f"warm-up, model loaded); the reranker counts whole prompts. {memory}: the peak above "
        f"the loaded model{' (torch allocations)' if args.device != 'cpu' else ''}.",
        "",
        *share_prefix_verdict(rows, args.device, args.shape == "0.6b" and args.scale >= 1),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = base_arguments("The GPU suite: GPU tests, benchmarks and the shared-prefix check")
    parser.set_defaults(shape="0.6b")
    parser.add_argument("--output", default="gpu-suite.md", help="where to write the table")
    parser.add_argument(
        "--budget",
        type=float,
        help=f"seconds for the whole suite (default {BUDGET_SECONDS:.0f} on a GPU; none on CPU, "
        "where neither it nor the caps of each method apply); methods that would run past it "
        "are stopped or not started",
    )
    args = parser.parse_args()
    if args.budget is None:
        args.budget = math.inf if args.device == "cpu" else BUDGET_SECONDS
    start = time.monotonic()
    deadline = start + args.budget
    print(f"GPU suite: shape {args.shape}, device {args.device}, scale {args.scale:g}")
    print("step 0: models and workloads", flush=True)
    found = workloads(args.shape, args.scale)
    cross_encoder = str(cross_encoder_folder(Path(found[RERANK_LONG].path)))
    left = deadline - time.monotonic()
    pytest_row = run_gpu_tests(
        min(PYTEST_CAP, max(left, MIN_START)) if math.isfinite(left) else None
    )
    rows = run_methods(plan(cross_encoder, args.device), found, args.device, deadline, args.only)
    mark_targets(rows, args.device)
    text = markdown(rows, pytest_row, found, args, time.monotonic() - start)
    print("\n" + text)
    Path(args.output).write_text(text)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
