"""Corpus embedding on Ray Data (``qwen3_core.batch.embed_dataset``) against the local engine
(``Qwen3Embedder.embed_documents`` in one process), measured in the same run.

Workload: 512 documents of 16 to 512 tokens (fixed seed), on a random model of the chosen
shape. Each method runs in a fresh spawned process; the Ray ones start a local Ray with all
of this machine's CPUs and give each worker an equal share of them (Ray sets
OMP_NUM_THREADS, so torch threads per worker = CPUs per worker), or one GPU each on CUDA.
A Ray job starts its workers and loads the model in each, every time: that start-up is
measured apart (a job of one row per worker) and shown, with the ratio without it. Run:

    python -m benchmarks.bench_batch                      # small shape: 2-4 minutes on 2 CPUs
    python -m benchmarks.bench_batch --shape 0.6b --scale 0.25
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Measurement, base_arguments, make_texts, measure, model_folders

DOCUMENTS = 512
BATCH_SIZE = 64


def setup_local(path: str, texts: list[str], device: str, report: str) -> Any:
    from qwen3_core import Qwen3Embedder, TransformersOptions

    embedder = Qwen3Embedder(path, backend=TransformersOptions(device=device, show_progress=False))

    def run() -> Any:
        return embedder.embed_documents(texts)

    run.warmup = lambda: embedder.embed_documents(texts[:4])  # type: ignore[attr-defined]
    return run


def setup_ray(path: str, texts: list[str], device: str, report: str, workers: int) -> Any:
    import ray

    from qwen3_core import TransformersOptions
    from qwen3_core.batch import embed_dataset

    cpus = os.cpu_count() or 1
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    on_gpu = device.startswith("cuda")
    options: dict[str, Any] = {
        "model": path,
        # Ray picks each worker's GPU
        "engine_options": {} if on_gpu else {"backend": TransformersOptions(device="cpu")},
        "concurrency": workers,
        "batch_size": BATCH_SIZE,
        "num_gpus_per_worker": 1 if on_gpu else 0,
        "num_cpus_per_worker": 1 if on_gpu else max(1, cpus // workers),
    }

    def job(rows: list[str]) -> int:
        items = [{"id": i, "text": t} for i, t in enumerate(rows)]
        return int(embed_dataset(ray.data.from_items(items), **options).materialize().count())

    def run() -> int:
        return job(texts)

    def warmup() -> None:
        # Ray itself is up now; a job of one row per worker is the per-job start-up: starting
        # the workers and loading the model in each.
        start = time.perf_counter()
        job(texts[:workers])
        Path(report).write_text(json.dumps({"startup": time.perf_counter() - start}))

    run.warmup = warmup  # type: ignore[attr-defined]
    return run


def setup_ray_1(path: str, texts: list[str], device: str, report: str) -> Any:
    return setup_ray(path, texts, device, report, workers=1)


def setup_ray_2(path: str, texts: list[str], device: str, report: str) -> Any:
    return setup_ray(path, texts, device, report, workers=2)


METHODS = {
    "local engine": ("benchmarks.bench_batch.setup_local", 0),
    "ray data, 1 worker": ("benchmarks.bench_batch.setup_ray_1", 1),
    "ray data, 2 workers": ("benchmarks.bench_batch.setup_ray_2", 2),
}


def main() -> None:
    args = base_arguments("Ray Data corpus embedding against the local engine").parse_args()
    from transformers import AutoTokenizer

    folders = model_folders(args.shape)
    path = str(Path(folders.embedding).resolve())
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = make_texts(tokenizer, max(4, int(DOCUMENTS * args.scale)), 16, 512, seed=0)
    tokens = sum(len(tokenizer(t).input_ids) for t in texts)
    print(
        f"batch: shape {args.shape}, device {args.device}, {os.cpu_count()} CPUs, "
        f"{len(texts)} documents, {tokens} tokens, Ray batches of {BATCH_SIZE}"
    )
    rows: list[tuple[Measurement, int, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, (target, workers) in METHODS.items():
            if args.only and name not in args.only:
                continue
            report = Path(scratch) / f"{workers}.json"
            kwargs = {"path": path, "texts": texts, "device": args.device, "report": str(report)}
            result = measure(name, target, args.device, kwargs)
            startup = json.loads(report.read_text())["startup"] if report.exists() else 0.0
            rows.append((result, workers, startup))
    _print_table(args.shape, args.device, rows, documents=len(texts), tokens=tokens)


def _print_table(
    shape: str,
    device: str,
    rows: list[tuple[Measurement, int, float]],
    *,
    documents: int,
    tokens: int,
) -> None:
    local = next((r.seconds for r, workers, _ in rows if workers == 0), float("nan"))
    print(f"\nEmbedding {documents} documents of 16-512 tokens ({shape} shape, {device})")
    print(
        "| method | s | documents/s | tokens/s | job start-up s | x local engine "
        "| x local engine, start-up excluded |"
    )
    print("|" + "---|" * 7)
    for result, workers, startup in rows:
        steady = result.seconds - startup if workers else result.seconds
        excluded = f"{local / steady:.2f}" if steady > 0 else "n/a"
        print(
            f"| {result.method} | {result.seconds:.2f} | {documents / result.seconds:.1f} | "
            f"{tokens / result.seconds:,.0f} | {startup:.2f} | {local / result.seconds:.2f} | "
            f"{excluded} |"
        )
    print(
        "s: the whole job (Ray rows: starting the workers, loading the model in each, "
        "embedding, collecting); start-up: a job of one row per worker."
    )


if __name__ == "__main__":
    main()
