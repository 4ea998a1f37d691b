"""``qwen3-rag serve`` under load, next to the same engine in-process.

Workloads, as clients send them: rerank requests of 1 query x 20-100 documents of 100-500
tokens (``/v2/rerank``), and embed requests of 16 texts of 100-500 tokens
(``/v1/embeddings``), from 1, 8, 32 and 128 concurrent clients (asyncio, one connection
each). Each row reports throughput (requests and document tokens per second), p50 and p99
latency, errors (any answer but 200) and the serving process's peak RSS. The in-process row
runs the same requests one after the other on the same engine in a process of its own:
``HTTP / in-process`` at one client is the server's overhead, including a lone request's
wait (it should be none: nothing waits for company).

    python -m benchmarks.bench_serve --shape tiny
    python -m benchmarks.bench_serve --shape 0.6b --requests 8 --docs 20 40 --doc-tokens 100 200

The server runs in a spawned process (uvicorn, as ``qwen3-rag serve`` runs it), the clients
here; on a small machine they share the cores, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import make_texts, model_folders

CONCURRENCY = (1, 8, 32, 128)
EMBED_TEXTS = 16
QUERY = "which passage answers the question about the capital city"


@dataclass
class Row:
    workload: str
    mode: str
    clients: int
    requests: int
    seconds: float
    tokens: int
    latencies: list[float]
    errors: int
    peak_rss: int

    def cells(self) -> list[str]:
        lat = np.asarray(self.latencies or [float("nan")]) * 1000
        return [
            self.workload,
            self.mode,
            str(self.clients),
            f"{self.requests / self.seconds:.2f}",
            f"{self.tokens / self.seconds:,.0f}",
            f"{np.percentile(lat, 50):.0f}",
            f"{np.percentile(lat, 99):.0f}",
            str(self.errors),
            f"{self.peak_rss / 2**20:,.0f}",
        ]


def _peak_rss(pid: int | str = "self") -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak(pid: int) -> None:
    """Start a new peak-RSS window (Linux: ``5`` to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):  # then the peak is the run's so far
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _serve(embedding: str, reranker: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    from qwen3_core import TransformersOptions
    from qwen3_core.serve import ServeSettings, create_app

    backend = TransformersOptions(**options)
    settings = ServeSettings(max_concurrent_requests=4096, request_timeout_s=3600)
    app = create_app(embedding, reranker, backend=backend, settings=settings, max_length=1024)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _in_process(
    embedding: str,
    reranker: str,
    options: dict[str, Any],
    work: dict[str, list[Any]],
    answer: Any,
) -> None:
    """The same requests on the same engine, one after the other, in this process."""
    from qwen3_core import Qwen3Embedder, Qwen3Reranker, TransformersOptions

    backend = TransformersOptions(**options)
    engines = {
        "rerank": Qwen3Reranker(reranker, backend=backend, max_length=1024),
        "embed": Qwen3Embedder(embedding, backend=backend, max_length=1024),
    }
    results = {}
    for workload, requests in work.items():
        engine = engines[workload]

        def one(request: Any, engine: Any = engine, workload: str = workload) -> None:
            if workload == "rerank":
                engine.rerank(QUERY, request)
            else:
                engine.embed_documents(request)

        def run(requests: list[Any] = requests, one: Any = one) -> tuple[float, list[float]]:
            one(requests[0])  # warm-up
            latencies = []
            start = time.perf_counter()
            for request in requests:
                began = time.perf_counter()
                one(request)
                latencies.append(time.perf_counter() - began)
            return time.perf_counter() - start, latencies

        # On the main thread, as a script calls it, and on a worker thread, as the server
        # (and an app's thread pool) does: glibc's allocator treats them differently.
        seconds, latencies = run()
        results[(workload, "in-process, main thread")] = (seconds, latencies, _peak_rss())
        with ThreadPoolExecutor(1) as worker:
            seconds, latencies = worker.submit(run).result()
        results[(workload, "in-process, worker thread")] = (seconds, latencies, _peak_rss())
    answer.put(results)


async def _load(url: str, workload: str, requests: Sequence[Any], clients: int) -> Any:
    import httpx

    path = "/v2/rerank" if workload == "rerank" else "/v1/embeddings"
    # At least one request per client: the list is repeated when there are more clients.
    repeated = [requests[i % len(requests)] for i in range(max(len(requests), clients))]
    bodies = [
        {"query": QUERY, "documents": r} if workload == "rerank" else {"input": r} for r in repeated
    ]
    latencies: list[float] = []
    errors = 0
    turn = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=3600) as client:
        await client.post(path, json=bodies[0])  # warm-up

        async def worker() -> None:
            nonlocal errors
            for index in turn:
                began = time.perf_counter()
                try:
                    answer = await client.post(path, json=bodies[index])
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - start, latencies, errors, len(bodies)


def _wait_healthy(url: str, process: multiprocessing.process.BaseProcess) -> None:
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError("the server process ended before it was healthy")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server was not healthy within 10 minutes")


def _workloads(
    args: argparse.Namespace, tokenizer: Any
) -> tuple[dict[str, list[Any]], dict[str, list[int]]]:
    rng = np.random.default_rng(0)
    low, high = args.doc_tokens
    sizes = rng.integers(args.docs[0], args.docs[1] + 1, size=args.requests)
    pool = make_texts(tokenizer, int(sizes.sum()) + EMBED_TEXTS * args.requests, low, high, 1)
    lengths = [len(tokenizer(t).input_ids) for t in pool]
    rerank, rerank_tokens, at = [], [], 0
    for size in sizes:
        rerank.append(pool[at : at + size])
        rerank_tokens.append(sum(lengths[at : at + size]))
        at += size
    embed, embed_tokens = [], []
    for _ in range(args.requests):
        embed.append(pool[at : at + EMBED_TEXTS])
        embed_tokens.append(sum(lengths[at : at + EMBED_TEXTS]))
        at += EMBED_TEXTS
    return {"rerank": rerank, "embed": embed}, {"rerank": rerank_tokens, "embed": embed_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description="qwen3-rag serve under load")
    parser.add_argument("--shape", default="tiny", choices=["tiny", "small", "0.6b"])
    parser.add_argument("--requests", type=int, default=64, help="requests per row")
    parser.add_argument("--docs", type=int, nargs=2, default=(20, 100), metavar=("LOW", "HIGH"))
    parser.add_argument(
        "--doc-tokens", type=int, nargs=2, default=(100, 500), metavar=("LOW", "HIGH")
    )
    parser.add_argument("--clients", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--workload", choices=["rerank", "embed", "both"], default="both")
    parser.add_argument("--int8", action="store_true", help="--quantization int8 on both sides")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from qwen3_core.testing import free_port

    folders = model_folders(args.shape)
    embedding, reranker = str(folders.embedding), str(folders.reranker)
    tokenizer = AutoTokenizer.from_pretrained(reranker)
    work, tokens = _workloads(args, tokenizer)
    if args.workload != "both":
        work = {args.workload: work[args.workload]}
    options: dict[str, Any] = {"device": "cpu", "show_progress": False}
    if args.int8:
        options["quantization"] = "int8"
    spawn = multiprocessing.get_context("spawn")

    rows: list[Row] = []
    answer = spawn.Queue()
    local = spawn.Process(target=_in_process, args=(embedding, reranker, options, work, answer))
    local.start()
    measured = answer.get()
    local.join()
    for (workload, mode), (seconds, latencies, rss) in measured.items():
        rows.append(
            Row(
                workload,
                mode,
                1,
                len(latencies),
                seconds,
                sum(tokens[workload]),
                latencies,
                0,
                rss,
            )
        )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = spawn.Process(target=_serve, args=(embedding, reranker, port, options))
    server.start()
    try:
        _wait_healthy(url, server)
        assert server.pid is not None
        for workload, requests in work.items():
            for clients in args.clients:
                _reset_peak(server.pid)
                seconds, latencies, errors, sent = asyncio.run(
                    _load(url, workload, requests, clients)
                )
                per_request = sum(tokens[workload]) / len(requests)
                rows.append(
                    Row(
                        workload,
                        "HTTP",
                        clients,
                        sent,
                        seconds,
                        round(per_request * sent),
                        latencies,
                        errors,
                        _peak_rss(server.pid),
                    )
                )
    finally:
        server.terminate()
        server.join(30)

    header = [
        "workload",
        "mode",
        "clients",
        "req/s",
        "doc tokens/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "peak RSS MiB",
    ]
    print(
        f"shape {args.shape}, {args.requests} requests per row, rerank {args.docs[0]}-"
        f"{args.docs[1]} docs, embed {EMBED_TEXTS} texts, {args.doc_tokens[0]}-"
        f"{args.doc_tokens[1]} tokens each; {os.cpu_count()} CPUs"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    for workload in work:
        base = next(r for r in rows if r.workload == workload and r.mode.endswith("worker thread"))
        one = next(
            (r for r in rows if r.workload == workload and r.clients == 1 and r.mode == "HTTP"),
            None,
        )
        if one is not None:
            ratio = (one.requests / one.seconds) / (base.requests / base.seconds)
            print(f"{workload}: HTTP at 1 client / in-process (worker thread) = {ratio:.3f}")


if __name__ == "__main__":
    main()
