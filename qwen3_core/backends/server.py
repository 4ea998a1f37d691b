"""The server backend: both models behind vLLM's OpenAI-compatible server, fed token ids.

- Embedding: ``POST /v1/embeddings`` with ``input`` as lists of token ids; the server runs
  last-token pooling (and normalises); the engine cuts to ``dimensions`` and normalises.
- Reranking: ``POST /classify`` with the full prompt's token ids and ``use_activation:
  false``, on a server started with the yes/no classifier overrides (``RERANKER_OVERRIDES``
  of the vLLM backend): the answer's single value is then the raw log-odds
  logit_yes - logit_no, not the float32 P(yes) it returns by default, from which the
  log-odds cannot be recovered once it rounds to 1.0. A sequence-classification conversion
  runs without overrides: one label's raw score is the log-odds; two labels answer
  [score_no, score_yes], and the log-odds is their difference. A vLLM too old to know
  ``use_activation`` ignores it and answers P(yes).

The client tokenizes with the one prompt module, so the server sees exactly the tokens the
local backends see and user text cannot inject template tokens; vLLM's text endpoints
(``/score``, ``/rerank``) are never used, as they do not build the Qwen3 reranker prompt.
Every answer is checked (count, order, size), so a server running another model fails
clearly instead of returning a wrong ranking.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np

from qwen3_core.backends.http import ServerError, ServerPool
from qwen3_core.backends.vllm import RERANKER_OVERRIDES
from qwen3_core.tokenization import RerankPrompt, TokenIds
from qwen3_core.variants import Variant

MAX_INPUTS_PER_REQUEST = 64
MAX_TOKENS_PER_REQUEST = 32768

RERANKER_SERVER_FLAGS = f"--runner pooling --hf-overrides '{json.dumps(RERANKER_OVERRIDES)}'"


def request_chunks(lengths: Sequence[int]) -> Iterator[slice]:
    """Consecutive slices of at most ``MAX_INPUTS_PER_REQUEST`` inputs and (unless one input
    is longer) ``MAX_TOKENS_PER_REQUEST`` tokens: requests stay small enough to spread over
    servers and retry cheaply, and large enough to amortise the round trip."""
    start, tokens = 0, 0
    for index, length in enumerate(lengths):
        if index > start and (
            index - start >= MAX_INPUTS_PER_REQUEST or tokens + length > MAX_TOKENS_PER_REQUEST
        ):
            yield slice(start, index)
            start, tokens = index, 0
        tokens += length
    if start < len(lengths):
        yield slice(start, len(lengths))


def _rows(answer: Any, expected: int, where: str) -> list[dict[str, Any]]:
    """The ``data`` rows of an answer, in input order, checked to be one per input."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ServerError(f"{where} answered without a list of results: {str(answer)[:200]}")
    if len(data) != expected:
        raise ServerError(f"{where} returned {len(data)} results for {expected} inputs")
    indices = [row.get("index", i) for i, row in enumerate(data)]
    if sorted(indices) != list(range(expected)):
        raise ServerError(f"{where} returned result indices {indices[:10]}, not 0..{expected - 1}")
    return [row for _, row in sorted(zip(indices, data, strict=True), key=lambda p: p[0])]


def _floats(value: Any, size: int | None, what: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ServerError(f"{where} returned a malformed {what}: {str(value)[:100]}") from exc
    if array.ndim != 1 or (size is not None and array.shape[0] != size):
        raise ServerError(
            f"{where} returned a {what} of shape {array.shape}, expected ({size},): "
            "is the server running another model?"
        )
    return array


class _ServerBackend:
    """Requests spread over the pool: threads for sync calls, tasks for async ones."""

    path: str

    def __init__(self, pool: ServerPool, model: str) -> None:
        self.pool = pool
        self.model = model
        self._threads: ThreadPoolExecutor | None = None

    def _body(self, sequences: Sequence[TokenIds]) -> dict[str, Any]:
        return {"model": self.model, "input": [np.asarray(ids).tolist() for ids in sequences]}

    def _parse(self, answer: Any, count: int) -> np.ndarray:
        raise NotImplementedError

    def _request(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        answer = self.pool.request("POST", self.path, self._body(sequences))
        return self._parse(answer, len(sequences))

    async def _arequest(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        answer = await self.pool.arequest("POST", self.path, self._body(sequences))
        return self._parse(answer, len(sequences))

    def _run(self, sequences: Sequence[TokenIds]) -> list[np.ndarray]:
        chunks = [sequences[s] for s in request_chunks([len(ids) for ids in sequences])]
        if len(chunks) <= 1:
            return [self._request(c) for c in chunks]
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                self.pool.max_concurrency, thread_name_prefix="qwen3-server"
            )
        futures = [self._threads.submit(self._request, c) for c in chunks]
        try:
            return [f.result() for f in futures]
        finally:
            # A request that failed for good fails the call: the ones not sent yet are not
            # sent (each would spend its own retry budget on the same outage).
            for future in futures:
                future.cancel()

    async def _arun(self, sequences: Sequence[TokenIds]) -> list[np.ndarray]:
        chunks = [sequences[s] for s in request_chunks([len(ids) for ids in sequences])]
        tasks = [asyncio.ensure_future(self._arequest(c)) for c in chunks]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # as above; a no-op for the tasks that are done
                task.cancel()

    def close(self) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        self.pool.close()


class ServerEmbeddingBackend(_ServerBackend):
    """Qwen3-Embedding on vLLM servers (``--runner pooling``)."""

    path = "/v1/embeddings"

    def __init__(self, pool: ServerPool, model: str, *, hidden_size: int) -> None:
        super().__init__(pool, model)
        self._hidden_size = hidden_size

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def _body(self, sequences: Sequence[TokenIds]) -> dict[str, Any]:
        return {**super()._body(sequences), "encoding_format": "float"}

    def _parse(self, answer: Any, count: int) -> np.ndarray:
        where = f"the embedding server ({self.path})"
        rows = _rows(answer, count, where)
        vectors = [_floats(r.get("embedding"), self._hidden_size, "embedding", where) for r in rows]
        return np.stack(vectors) if vectors else np.zeros((0, self._hidden_size), np.float32)

    def embed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        return self._join(self._run(sequences))

    async def aembed(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        return self._join(await self._arun(sequences))

    def _join(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, self._hidden_size), np.float32)


class ServerRerankBackend(_ServerBackend):
    """Qwen3-Reranker on vLLM servers, as a classifier (``/classify``) without its
    activation: a causal-LM reranker or a one-label conversion gives one raw logit, the
    log-odds; a two-label conversion gives [score_no, score_yes]."""

    path = "/classify"

    def __init__(self, pool: ServerPool, model: str, variant: Variant) -> None:
        super().__init__(pool, model)
        seq_cls = variant.architecture == "seq_cls"
        self._labels = variant.num_labels if seq_cls else 1
        self._yes = variant.yes_label if seq_cls else 0
        self._flags = "--runner pooling" if seq_cls else RERANKER_SERVER_FLAGS

    def _body(self, sequences: Sequence[TokenIds]) -> dict[str, Any]:
        # The raw logits, not P(yes): see the module's docstring.
        return {**super()._body(sequences), "use_activation": False}

    def _parse(self, answer: Any, count: int) -> np.ndarray:
        where = f"the reranker server ({self.path})"
        rows = _rows(answer, count, where)
        # With the activation off, vLLM's "probs" field carries the raw logits.
        raw = [r.get("probs") for r in rows]
        if any(not isinstance(p, list) or len(p) != self._labels for p in raw):
            raise ServerError(
                f"{where} returned {str(raw[0])[:80]} instead of {self._labels} "
                f"logit{'' if self._labels == 1 else 's'} per prompt: start the "
                f"reranker server with {self._flags}"
            )
        lists = cast(list[list[Any]], raw)
        columns = [
            _floats([p[label] for p in lists], count, "logit list", where)
            for label in range(self._labels)
        ]
        if self._labels == 1:
            return columns[0]
        log_odds: np.ndarray = columns[self._yes] - columns[1 - self._yes]
        return log_odds

    def logits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        parts = self._run([p.ids for p in prompts])
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def alogits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        parts = await self._arun([p.ids for p in prompts])
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
