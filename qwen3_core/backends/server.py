"""Internal: the server backend: both models behind vLLM's OpenAI-compatible server, fed token
ids.

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
Every answer is checked (one row per input matched by its index, numbers where numbers
belong, the size, finite values, no all-zero vector), so a server running another model, or
a proxy answering in another form, fails clearly instead of returning a wrong ranking. A
reranker server is also checked, on its first call, to honour ``use_activation``: the same
prompts asked with the activation on must come back as the activation of the raw logits.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from qwen3_core.backend_options import ServerOptions
from qwen3_core.backends.http import ServerPool, plural
from qwen3_core.backends.vllm import RERANKER_OVERRIDES
from qwen3_core.checkpoints import Checkpoint, open_checkpoint
from qwen3_core.defaults import ModelKind
from qwen3_core.errors import ServerError
from qwen3_core.hub import HubOptions
from qwen3_core.tokenization import RerankPrompt, TokenIds
from qwen3_core.variants import Variant

MAX_INPUTS_PER_REQUEST = 64
MAX_TOKENS_PER_REQUEST = 32768
PROBED_PROMPTS = 2
"""Prompts asked again with the activation on, on a reranker server's first call."""
ACTIVATION_TOLERANCE = 0.01
"""How far a probability may be from the activation of the raw logits (bfloat16 servers)."""

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


class _ServerBackend:
    """Requests spread over the pool: threads for sync calls, tasks for async ones."""

    path: str
    what: str

    def __init__(self, pool: ServerPool, model: str) -> None:
        self.pool = pool
        self.model = model
        self._threads: ThreadPoolExecutor | None = None

    @property
    def where(self) -> str:
        return f"the {self.what} server ({self.path})"

    def _body(self, sequences: Sequence[TokenIds]) -> dict[str, Any]:
        return {"model": self.model, "input": [np.asarray(ids).tolist() for ids in sequences]}

    def _rows(self, answer: Any, expected: int) -> list[dict[str, Any]]:
        """The ``data`` rows of an answer, in input order: one per input, each placed by its
        ``index`` (rows may come in any order; without indices their order is unknown)."""
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            quoted = self.pool.quote(answer, 200)
            raise ServerError(f"{self.where} answered without a list of results: {quoted}")
        if len(data) != expected:
            raise ServerError(f"{self.where} returned {len(data)} results for {expected} inputs")
        indices = [row.get("index") for row in data]
        if not all(type(index) is int for index in indices):
            raise ServerError(
                f"{self.where} returned results without an integer index "
                f"({self.pool.quote(indices[:10], 100)}): which input each belongs to is unknown"
            )
        if sorted(indices) != list(range(expected)):
            raise ServerError(
                f"{self.where} returned result indices {indices[:10]}, not 0..{expected - 1}"
            )
        return [row for _, row in sorted(zip(indices, data, strict=True), key=lambda p: p[0])]

    def _numbers(self, rows: list[Any], size: int, what: str) -> np.ndarray:
        """``rows`` (one list of ``size`` JSON numbers per input) as a float32 matrix: a
        boolean, a string or a nested list is an error, and so is NaN or inf."""
        for row in rows:
            if not isinstance(row, list) or not all(type(v) in (int, float) for v in row):
                raise ServerError(
                    f"{self.where} returned a malformed {what}: {self.pool.quote(row, 100)}"
                )
            if len(row) != size:
                raise ServerError(
                    f"{self.where} returned a {what} of shape ({len(row)},), expected "
                    f"({size},): is the server running another model?"
                )
        values = np.array(rows, dtype=np.float32).reshape(len(rows), size)
        broken = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if broken.size:
            raise ServerError(
                f"{self.where} returned NaN or inf for input(s) {broken[:10].tolist()}: the "
                "server's model overflowed or is broken (a server started with --dtype float16 "
                "can overflow: start it with --dtype bfloat16 or float32)"
            )
        return values

    def _parse(self, answer: Any, count: int) -> np.ndarray:
        raise NotImplementedError

    def _request(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        answer = self.pool.request("POST", self.path, self._body(sequences))
        return self._parse(answer, len(sequences))

    async def _arequest(self, sequences: Sequence[TokenIds]) -> np.ndarray:
        answer = await self.pool.arequest("POST", self.path, self._body(sequences))
        return self._parse(answer, len(sequences))

    def _split(self, sequences: Sequence[Any]) -> list[slice]:
        """How ``sequences`` go out: one request per slice."""
        return list(request_chunks([len(ids) for ids in sequences]))

    def _run(self, sequences: Sequence[TokenIds]) -> list[np.ndarray]:
        chunks = [sequences[s] for s in self._split(sequences)]
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
        chunks = [sequences[s] for s in self._split(sequences)]
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
    what = "embedding"

    def __init__(self, pool: ServerPool, model: str, *, hidden_size: int) -> None:
        super().__init__(pool, model)
        self._hidden_size = hidden_size

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def _body(self, sequences: Sequence[TokenIds]) -> dict[str, Any]:
        return {**super()._body(sequences), "encoding_format": "float"}

    def _parse(self, answer: Any, count: int) -> np.ndarray:
        rows = self._rows(answer, count)
        vectors = self._numbers([r.get("embedding") for r in rows], self._hidden_size, "embedding")
        zero = np.flatnonzero(~vectors.any(axis=1))
        if zero.size:
            raise ServerError(
                f"{self.where} returned an all-zero embedding for input(s) {zero[:10].tolist()}: "
                "a model's embedding is never zero; is the server broken?"
            )
        return vectors

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
    what = "reranker"

    def __init__(self, pool: ServerPool, model: str, variant: Variant) -> None:
        super().__init__(pool, model)
        seq_cls = variant.architecture == "seq_cls"
        self._labels = variant.num_labels if seq_cls else 1
        self._yes = variant.yes_label if seq_cls else 0
        self._flags = "--runner pooling" if seq_cls else RERANKER_SERVER_FLAGS
        self._raw_logits_seen = False
        """Whether the server has been seen to honour ``use_activation``."""

    def _body(self, sequences: Sequence[TokenIds], *, activation: bool = False) -> dict[str, Any]:
        # The raw logits, not P(yes): see the module's docstring.
        return {**super()._body(sequences), "use_activation": activation}

    def _parse(self, answer: Any, count: int) -> np.ndarray:
        """The answer's ``probs`` (the raw logits, with the activation off), one row per
        prompt."""
        raw = [r.get("probs") for r in self._rows(answer, count)]
        for probs in raw:
            if not isinstance(probs, list) or len(probs) != self._labels:
                raise ServerError(
                    f"{self.where} returned {self.pool.quote(probs, 80)} instead of "
                    f"{plural(self._labels, 'logit')} per prompt: start the reranker server "
                    f"with {self._flags}"
                )
        return self._numbers(raw, self._labels, "logit list")

    def _log_odds(self, raw: np.ndarray) -> np.ndarray:
        if self._labels == 1:
            return raw[:, 0]
        log_odds: np.ndarray = raw[:, self._yes] - raw[:, 1 - self._yes]
        return log_odds

    def _activation(self, raw: np.ndarray) -> np.ndarray:
        """What vLLM's classifier activation makes of raw logits: the sigmoid of one, the
        softmax of several."""
        logits = raw.astype(np.float64)
        if self._labels == 1:
            return 0.5 * (1.0 + np.tanh(logits / 2))  # the sigmoid, without exp's overflow
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        softmax: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
        return softmax

    def _probe_rows(self, raw: np.ndarray) -> list[int]:
        """The prompts whose raw answers differ most from their activation: the ones that
        best tell a server that honours ``use_activation`` from one that ignores it."""
        telling = np.abs(self._activation(raw) - raw).max(axis=1)
        return sorted(np.argsort(-telling, kind="stable")[:PROBED_PROMPTS].tolist())

    def _check_activation(self, raw: np.ndarray, activated: np.ndarray) -> None:
        """``activated`` (the probed prompts asked with the activation on) must be the
        activation of ``raw`` (the same prompts' answers with it off). A server that answers
        the same both times ignores ``use_activation``: its "logits" are probabilities."""
        honours = np.abs(self._activation(raw) - activated).max(axis=1) <= ACTIVATION_TOLERANCE
        same = np.abs(raw - activated).max(axis=1) <= ACTIVATION_TOLERANCE
        if (same & ~honours).any():
            raise ServerError(
                f'{self.where} ignores "use_activation": false and answers probabilities, '
                "from which the log-odds cannot be recovered: run a vLLM whose /classify takes "
                "use_activation"
            )
        if (~same & ~honours).any():
            raise ServerError(
                f"{self.where} answered the same prompts with the activation on "
                f"{self.pool.quote(activated.tolist(), 100)}, not the activation of its raw "
                f"logits {self.pool.quote(raw.tolist(), 100)}: is the server running another "
                "model?"
            )
        # Raw logits close to their own activation (x near 0.66) tell nothing: asked again.
        self._raw_logits_seen = bool((honours & ~same).any())

    def _probe(self, sequences: Sequence[TokenIds], raw: np.ndarray) -> tuple[list[int], Any]:
        rows = self._probe_rows(raw)
        return rows, self._body([sequences[i] for i in rows], activation=True)

    def logits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        return self._logits([p.ids for p in prompts])

    def _logits(self, sequences: Sequence[Any]) -> np.ndarray:
        """The log-odds of each sequence (what ``_body`` takes), checking on the first call
        that the server honours ``use_activation``."""
        parts = self._run(sequences)
        raw = np.concatenate(parts) if parts else np.zeros((0, self._labels), np.float32)
        if not self._raw_logits_seen and len(raw):
            rows, body = self._probe(sequences, raw)
            answer = self.pool.request("POST", self.path, body)
            self._check_activation(raw[rows], self._parse(answer, len(rows)))
        return self._log_odds(raw)

    async def alogits(self, prompts: Sequence[RerankPrompt]) -> np.ndarray:
        sequences = [p.ids for p in prompts]
        parts = await self._arun(sequences)
        raw = np.concatenate(parts) if parts else np.zeros((0, self._labels), np.float32)
        if not self._raw_logits_seen and len(raw):
            rows, body = self._probe(sequences, raw)
            answer = await self.pool.arequest("POST", self.path, body)
            self._check_activation(raw[rows], self._parse(answer, len(rows)))
        return self._log_odds(raw)


@dataclass
class ServerModel:
    """A checkpoint's tokenizer and config, for a client of servers that hold the weights."""

    checkpoint: Checkpoint
    options: ServerOptions
    device: None = None
    dtype: None = None

    @property
    def base_url(self) -> list[str]:
        return self.options.urls

    def _pool(self) -> ServerPool:
        return ServerPool(
            self.options.base_url,  # as given: ``urls`` hides the user information
            api_key=self.options.api_key,
            timeout=float(self.options.timeout),
            max_concurrency=self.options.max_concurrency,
            max_retries=self.options.max_retries,
        )

    def embedding(self, model: str, *, max_length: int) -> ServerEmbeddingBackend:
        hidden_size = int(self.checkpoint.config["hidden_size"])
        return ServerEmbeddingBackend(self._pool(), model, hidden_size=hidden_size)

    def reranker(
        self, model: str, *, max_length: int, yes_id: int, no_id: int
    ) -> ServerRerankBackend:
        return ServerRerankBackend(self._pool(), model, self.checkpoint.variant)


def open_model(
    model: str | os.PathLike[str], kind: ModelKind, options: ServerOptions, *, hub: HubOptions
) -> ServerModel:
    """The checkpoint without its weights: the servers hold them."""
    return ServerModel(open_checkpoint(model, kind, weights=False, hub=hub), options)
