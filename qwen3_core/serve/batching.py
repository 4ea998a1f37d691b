"""Internal: requests merged into engine calls, and what keeps the queue bounded.

- ``BatchQueue``: one per model. While the engine computes one call, the requests that arrive
  wait; as soon as it is free, all of them (up to a token cap) go into the next call, where
  the engine cuts them into its own token-budget batches, as TEI does. A request that arrives
  while the engine is idle starts at once: nothing waits for company.
- ``Admission``: at most N requests in flight; one more is answered 429 with a
  ``Retry-After`` at once, so that a burst meets a clear refusal rather than an unbounded
  queue and a storm of time-outs. At shutdown it refuses new requests (503) and waits for the
  ones in flight.
- ``BodyLimit``: a request body over the limit is refused (413) while it is read, before it is
  held in memory whole.

A request that is cancelled (its client went away, or its deadline passed) before its call
starts is left out of the call: no model work is spent on an answer nobody reads.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen3_core.serve.metrics import ServeMetrics


@dataclass(eq=False)
class _Job:
    inputs: Sequence[Any]
    tokens: int
    future: asyncio.Future[np.ndarray]


@dataclass
class _Throughput:
    """Tokens per second of the recent calls (an exponential average), for Retry-After."""

    tokens_per_s: float = 0.0
    seen: bool = False

    def add(self, tokens: int, seconds: float) -> None:
        rate = tokens / max(seconds, 1e-6)
        self.tokens_per_s = rate if not self.seen else 0.8 * self.tokens_per_s + 0.2 * rate
        self.seen = True


class BatchQueue:
    """Merges one model's queued requests into engine calls, run on ``executor`` while
    holding ``engine`` (shared by the models of one server: one call at a time, as each call
    uses every core).

    ``run`` takes the inputs of every merged request, concatenated, and returns one result
    row per input; each request gets its own rows back. When a merged call fails, each of its
    requests is run again alone, so that one request's bad input fails that request only.
    """

    def __init__(
        self,
        model: str,
        run: Callable[[list[Any]], np.ndarray],
        executor: Executor,
        engine: asyncio.Lock,
        *,
        max_merged_tokens: int,
        metrics: ServeMetrics,
    ) -> None:
        self.model = model
        self._run = run
        self._executor = executor
        self._engine = engine
        self._max_tokens = max_merged_tokens
        self._metrics = metrics
        self._pending: collections.deque[_Job] = collections.deque()
        self._queued_tokens = 0
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.throughput = _Throughput()

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    async def submit(self, inputs: Sequence[Any], tokens: int) -> np.ndarray:
        """The result rows of ``inputs`` (``tokens`` long in all), once a call has run them."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work(), name=f"qwen3-rag {self.model} batches")
        assert self._wake is not None
        job = _Job(inputs, tokens, loop.create_future())
        self._pending.append(job)
        self._queued_tokens += tokens
        self._metrics.queue_depth.labels(self.model).set(len(self._pending))
        self._wake.set()
        # Cancelling this coroutine cancels the future: a job not yet taken is then skipped.
        return await job.future

    def _take(self) -> list[_Job]:
        """The next call's jobs: the oldest first, while their tokens fit the cap (the first
        always; a cancelled one never)."""
        jobs: list[_Job] = []
        tokens = 0
        while self._pending:
            job = self._pending[0]
            if job.future.done():  # cancelled while queued
                self._pending.popleft()
                self._queued_tokens -= job.tokens
                self._metrics.dropped.labels(self.model).inc()
                continue
            if jobs and tokens + job.tokens > self._max_tokens:
                break
            self._pending.popleft()
            self._queued_tokens -= job.tokens
            jobs.append(job)
            tokens += job.tokens
        self._metrics.queue_depth.labels(self.model).set(len(self._pending))
        return jobs

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Jobs are taken only once the engine is free: until then they stay queued, to be
            # merged with later arrivals or dropped if their client goes away.
            async with self._engine:
                jobs = self._take()
                if not jobs:
                    continue
                try:
                    await self._call(loop, jobs)
                except asyncio.CancelledError:
                    for job in jobs:
                        job.future.cancel()
                    raise

    async def _call(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        inputs = [item for job in jobs for item in job.inputs]
        tokens = sum(job.tokens for job in jobs)
        start = time.perf_counter()
        try:
            rows = await loop.run_in_executor(self._executor, self._run, inputs)
        except Exception as exc:
            if len(jobs) == 1:
                _settle(jobs[0].future, exc)
                return
            for job in jobs:  # alone, so that only the request at fault fails
                if not job.future.done():
                    await self._call(loop, [job])
            return
        self.throughput.add(tokens, time.perf_counter() - start)
        self._metrics.batch_requests.labels(self.model).observe(len(jobs))
        self._metrics.batch_inputs.labels(self.model).observe(len(inputs))
        self._metrics.tokens.labels(self.model).inc(tokens)
        self._metrics.inputs.labels(self.model).inc(len(inputs))
        offset = 0
        for job in jobs:
            part = rows[offset : offset + len(job.inputs)]
            offset += len(job.inputs)
            _settle(job.future, part)

    def seconds_to_clear(self) -> float:
        """About how long the queued work takes at the recent pace (0 before any call)."""
        rate = self.throughput.tokens_per_s
        return self._queued_tokens / rate if rate > 0 else 0.0

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        while self._pending:
            self._pending.popleft().future.cancel()
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


def _settle(future: asyncio.Future[np.ndarray], outcome: np.ndarray | BaseException) -> None:
    if future.done():  # its request was cancelled meanwhile: the rows are not needed
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


@dataclass
class Admission:
    """At most ``limit`` requests in flight; a drain at shutdown."""

    limit: int
    metrics: ServeMetrics
    queues: list[BatchQueue] = field(default_factory=list)
    in_flight: int = 0
    draining: bool = False
    _idle: asyncio.Event | None = None

    def enter(self) -> bool:
        if self.draining or self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    def retry_after_s(self) -> int:
        """Whole seconds after which a refused request may try again: the time the queued
        work takes at the recent pace, at least 1."""
        waits = [queue.seconds_to_clear() for queue in self.queues]
        return max(1, math.ceil(max(waits, default=0.0)))

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests, then wait up to ``timeout_s`` for those in flight; whether
        all finished."""
        self.draining = True
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read whole
    (by its ``Content-Length``, or while a chunked body streams in)."""

    def __init__(self, app: ASGIApp, limit: int, refuse: Callable[[int, str], ASGIApp]) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than the server's limit of {self.limit} bytes"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.refuse(413, too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self.refuse(413, too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later: the disconnect, which the handler watches for

        await self.app(scope, replay, send)
