"""Internal (import its public names from ``qwen3_core.serve``): the ASGI app,
Qwen3-Embedding and Qwen3-Reranker behind the HTTP APIs clients already speak.

``create_app(...)`` returns a FastAPI app, so it runs under any ASGI server (``qwen3-rag
serve`` runs it under uvicorn) and as a Ray Serve deployment (``ray_deployment``).

Endpoints (a model's endpoints answer 404 when the server holds no such model):

- ``POST /v1/rerank``, ``/v2/rerank``: Cohere's and Jina's rerank.
- ``POST /rerank``, ``/embed``: text-embeddings-inference's.
- ``POST /v1/embeddings``, ``GET /v1/models``: OpenAI's.
- ``POST /v2/embed``: Cohere's embed v2.
- ``POST /classify`` and token ids in ``/v1/embeddings``: vLLM's, as ``ServerOptions``
  clients send them, so that the engines, and the LangChain and LlamaIndex adapters, can be
  clients of this server as of vLLM's.
- ``GET /health``, ``GET /metrics`` (Prometheus).

A request's ``model`` must name the endpoint's model, as vLLM checks it: its served name,
the hub id or folder it was loaded from, or that id's last path component (a ``:query`` or
``:document`` suffix taken off); absent, null or empty is the endpoint's model.

Errors are JSON, ``{"error": {"message", "type", "code"}, "message"}`` (the OpenAI form,
with Cohere's top-level ``message``): 400 for a body the models cannot take, 401 for a
missing or wrong key, 404 for a model the server does not hold (or a ``model`` it does not
serve), 413 for a request over a limit (an input over ``max_length`` that the request asks
not to cut included), 422 for a body that does not parse or asks for what the server does
not do, 429 (with ``Retry-After``) when the queue is full, 503 while shutting down, 504 past
the deadline; a 500 says only that the server failed (the traceback goes to the server's
log).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen3_core import prompts
from qwen3_core.backend_options import BackendChoice
from qwen3_core.batching import unique_with_inverse
from qwen3_core.defaults import MAX_LENGTH
from qwen3_core.embedder import Qwen3Embedder
from qwen3_core.engine import check_finite
from qwen3_core.redaction import redact
from qwen3_core.reranker import Qwen3Reranker, _CallSettings, _Judged, _pairs, p_yes
from qwen3_core.serve.auth import BearerAuth
from qwen3_core.serve.batching import Admission, BatchQueue, BodyLimit
from qwen3_core.serve.metrics import CONTENT_TYPE, ServeMetrics
from qwen3_core.serve.schemas import (
    ClassifyRequest,
    CohereEmbedRequest,
    OpenAIEmbeddingRequest,
    RerankRequest,
    TeiEmbedRequest,
    TeiRerankRequest,
)
from qwen3_core.serve.settings import (
    DOCUMENT_SUFFIX,
    QUERY_SUFFIX,
    ServeSettings,
    check_served_name,
)
from qwen3_core.tokenization import RerankInputs, RerankPrompt

logger = logging.getLogger("qwen3_core.serve")

T = TypeVar("T")
ModelArgument = str | os.PathLike[str]


class ApiError(Exception):
    """An answer other than 200, with its message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "unavailable",
    504: "timeout",
}


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error answer: OpenAI's ``error`` object, and Cohere's ``message``."""
    error = {"message": message, "type": ERROR_TYPES.get(status, "error"), "code": status}
    return JSONResponse({"error": error, "message": message}, status, headers=headers)


def _unit_rows(states: np.ndarray, dimensions: int, normalize: bool = True) -> np.ndarray:
    """The first ``dimensions`` of each row, L2-normalised (as the engine's embeddings)."""
    cut = check_finite(np.asarray(states, dtype=np.float32)[:, :dimensions], "embeddings")
    if not normalize:
        return cut
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return np.asarray(cut / np.maximum(norms, 1e-12), dtype=np.float32)


def _common_prefix(sequences: Sequence[np.ndarray]) -> int:
    """How many leading tokens all ``sequences`` share, leaving each at least one of its
    own: the query's part of a request's reranker prompts, which a backend may run once."""
    shortest = min(len(s) for s in sequences)
    first = sequences[0][: shortest - 1]
    same = np.ones(len(first), dtype=bool)
    for sequence in sequences[1:]:
        same &= sequence[: len(first)] == first
    return int(np.argmin(same)) if not same.all() else len(first)


@dataclass(frozen=True)
class _Served:
    """A model's names: ``name`` in answers and ``GET /v1/models``; ``accepted`` in a
    request's ``model``."""

    kind: str
    name: str
    accepted: frozenset[str]

    @classmethod
    def of(cls, kind: str, given: str, served_name: str | None) -> _Served:
        """``given``: the hub id or folder the model was loaded from."""
        names = {given, PurePath(given).name or given}
        if served_name is not None:
            names.add(served_name)
        return cls(kind, served_name or given, frozenset(names))

    def check(self, model: str | None) -> None:
        """A 404 unless ``model`` (a ``:query`` or ``:document`` suffix taken off) names
        this model; absent or empty names it."""
        if not model:
            return
        asked = model
        for suffix in (QUERY_SUFFIX, DOCUMENT_SUFFIX):
            if asked.endswith(suffix):
                asked = asked[: -len(suffix)]
                break
        if asked in self.accepted:
            return
        others = sorted(self.accepted - {self.name})
        also = f" (also accepted: {', '.join(map(repr, others))})" if others else ""
        raise ApiError(
            404,
            f"the model {redact(model)!r} is not served here: this endpoint's {self.kind} model "
            f"is {self.name!r}{also}",
        )


def _over_limit(
    what: str, inverse: np.ndarray, over: dict[int, int], limit: str, cut_count: int
) -> ApiError:
    """The 413 for inputs a request asked not to cut: ``over`` holds the token count of each
    distinct input over the limit, ``inverse`` maps the request's inputs to them, ``limit``
    words the limit, ``cut_count`` is how many distinct inputs the engine would have cut."""
    found = [(index, over[item]) for index, item in enumerate(inverse.tolist()) if item in over]
    if not found:  # the engine would cut, though no count says which: refuse all the same
        return ApiError(
            413,
            f"Input validation error: {cut_count} {what}s are longer than {limit}, and the "
            "request asks not to cut inputs",
        )
    shown = ", ".join(f"{what} {index} has {tokens} tokens" for index, tokens in found[:5])
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    return ApiError(
        413,
        f"Input validation error: {shown}{more}, more than {limit}, and the request asks not "
        "to cut inputs (send shorter inputs, or allow truncation)",
    )


def _whole_texts(embedder: Qwen3Embedder, texts: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """The engine's token ids of ``texts`` (as ``Qwen3Embedder._tokenize``), or a 413 naming
    each text it would cut, with its token count (``<|endoftext|>`` and, for a query, its
    instruction included)."""
    distinct, inverse = unique_with_inverse(texts)
    sequences, truncation = embedder._tokenizer.encode(distinct)
    if not truncation.truncated:
        return sequences, inverse
    limit = embedder.max_length
    full = [i for i, ids in enumerate(sequences) if len(ids) >= limit]  # cut, or just fitting
    whole = embedder._checkpoint.tokenizer.encode_literal([distinct[i] for i in full])
    lengths = {i: len(ids) + 1 for i, ids in zip(full, whole, strict=True)}  # + <|endoftext|>
    over = {i: tokens for i, tokens in lengths.items() if tokens > limit}
    raise _over_limit(
        "input", inverse, over, f"the model's max_length={limit}", truncation.truncated
    )


def _whole_documents(
    reranker: Qwen3Reranker, pairs: list[tuple[str, str]], settings: _CallSettings
) -> tuple[RerankInputs, np.ndarray]:
    """The engine's prompts of ``pairs`` (as ``Qwen3Reranker._tokenize``), or a 413 naming
    each document that would not be read whole: cut to fit ``max_length``, or, in windows,
    past ``max_chunks_per_document`` of them."""
    distinct, inverse = unique_with_inverse(pairs)
    budget = settings.budget
    inputs = reranker._tokenizer.encode(distinct, settings.task, budget)
    cut_count = inputs.truncated.truncated + inputs.clipped
    if not cut_count:
        return inputs, inverse
    literal = reranker._checkpoint.tokenizer
    queries = list(dict.fromkeys(query for query, _ in distinct))
    heads = literal.encode_literal([prompts.rerank_head_text(settings.task, q) for q in queries])
    head_tokens = {q: len(ids) for q, ids in zip(queries, heads, strict=True)}
    documents = literal.encode_literal([prompts.rerank_document_text(d) for _, d in distinct])
    frame = len(reranker._tokenizer.prefix) + len(reranker._tokenizer.suffix)
    asked = budget.max_document_tokens  # a cut the request asks for is no truncation
    lengths = {
        i: frame
        + head_tokens[query]
        + (len(ids) if asked is None or budget.chunked else min(len(ids), asked))
        for i, ((query, _), ids) in enumerate(zip(distinct, documents, strict=True))
    }
    if budget.chunked:  # read whole when its windows reach its end
        ends: dict[int, int] = {}
        for owner, (_, end) in zip(inputs.owners.tolist(), inputs.spans, strict=True):
            ends[owner] = max(ends.get(owner, 0), end)
        unread = {i for i, (_, text) in enumerate(distinct) if ends.get(i, 0) < len(text)}
        limit = (
            f"max_chunks_per_document={budget.max_chunks_per_document} windows within the "
            f"model's max_length={reranker.max_length} read"
        )
    else:
        unread = {i for i, tokens in lengths.items() if tokens > reranker.max_length}
        limit = f"the model's max_length={reranker.max_length} (the whole prompt)"
    over = {i: lengths[i] for i in unread}
    raise _over_limit("document", inverse, over, limit, cut_count)


class _Service:
    """The models, their queues, and what each endpoint does with them."""

    def __init__(
        self,
        embedder: Qwen3Embedder | None,
        reranker: Qwen3Reranker | None,
        settings: ServeSettings,
        served: dict[str, _Served],
        owned: list[Qwen3Embedder | Qwen3Reranker],
    ) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.settings = settings
        self.served = served
        self.names = {kind: model.name for kind, model in served.items()}
        self.owned = owned
        self.metrics = ServeMetrics()
        self.created = int(time.time())
        # One model call at a time (``engine``): each call already uses every core.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="qwen3-rag-serve")
        self.engine = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop serving the app, once started."""
        limit = settings.max_merged_tokens
        self.embed_queue = self.rerank_queue = None
        queues = []
        if embedder is not None:
            self.embed_queue = BatchQueue(
                "embedding",
                lambda inputs: embedder._backend.embed(inputs),
                self.executor,
                self.engine,
                max_merged_tokens=limit,
                metrics=self.metrics,
            )
            queues.append(self.embed_queue)
        if reranker is not None:
            self.rerank_queue = BatchQueue(
                "reranker",
                lambda inputs: reranker._backend.logits(inputs),
                self.executor,
                self.engine,
                max_merged_tokens=limit,
                metrics=self.metrics,
            )
            queues.append(self.rerank_queue)
        self.admission = Admission(settings.max_concurrent_requests, self.metrics, queues)

    # What every endpoint checks.

    def need_embedder(self, model: str | None = None) -> tuple[Qwen3Embedder, BatchQueue]:
        """The embedding model and its queue; a 404 without one, or when ``model`` (a
        request's) names another."""
        if self.embedder is None or self.embed_queue is None:
            raise ApiError(404, "this server holds no embedding model (start it with one)")
        self.served["embedding"].check(model)
        return self.embedder, self.embed_queue

    def need_reranker(self, model: str | None = None) -> tuple[Qwen3Reranker, BatchQueue]:
        """The reranker and its queue; a 404 without one, or when ``model`` names another."""
        if self.reranker is None or self.rerank_queue is None:
            raise ApiError(404, "this server holds no reranker (start it with one)")
        self.served["reranker"].check(model)
        return self.reranker, self.rerank_queue

    def check_count(self, count: int, what: str) -> None:
        limit = self.settings.max_documents
        if count > limit:
            raise ApiError(413, f"{count} {what} in one request: the server takes at most {limit}")

    def dimensions(self, asked: int | None) -> int:
        embedder, _ = self.need_embedder()
        hidden = embedder._hidden_size
        if asked is None:
            return embedder.dimension
        if asked > hidden:
            raise ApiError(400, f"dimensions={asked} is more than the model's {hidden}")
        return asked

    # The model work.

    async def embed(
        self,
        texts: list[str],
        *,
        query: bool,
        instruction: str | None,
        dimensions: int | None,
        normalize: bool = True,
        cut: bool = True,
    ) -> tuple[np.ndarray, int]:
        """Unit vectors of ``texts`` (as queries or documents), and their token count.
        ``cut=False``: a text over ``max_length`` is refused (413) rather than cut."""
        embedder, queue = self.need_embedder()
        self.check_count(len(texts), "texts")
        size = self.dimensions(dimensions)
        try:
            if query:
                prepared = embedder._query_texts(texts, instruction)
            else:
                if instruction is not None:
                    raise ValueError("an instruction applies to queries only")
                prepared = embedder._document_texts(texts)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc)) from exc
        if not prepared:
            return np.zeros((0, size), dtype=np.float32), 0
        if cut:
            sequences, inverse = await asyncio.to_thread(embedder._tokenize, prepared)
        else:
            sequences, inverse = await asyncio.to_thread(_whole_texts, embedder, prepared)
        tokens = sum(len(s) for s in sequences)
        states = await queue.submit(sequences, tokens)
        return _unit_rows(states, size, normalize)[inverse], tokens

    def token_ids(
        self, inputs: Sequence[Sequence[int]], vocabulary: int, max_length: int
    ) -> list[np.ndarray]:
        """Token ids as given, checked: ids the model has, 1 to ``max_length`` of them."""
        self.check_count(len(inputs), "inputs")
        sequences = []
        for index, ids in enumerate(inputs):
            array = np.asarray(ids, dtype=np.int64)
            if not 1 <= len(array) <= max_length:
                raise ApiError(
                    400,
                    f"input {index} has {len(array)} tokens: the server takes 1 to "
                    f"max_length={max_length}",
                )
            if array.min() < 0 or array.max() >= vocabulary:
                raise ApiError(
                    400, f"input {index} holds token ids outside the model's 0..{vocabulary - 1}"
                )
            sequences.append(array)
        return sequences

    async def embed_ids(
        self, inputs: Sequence[Sequence[int]], dimensions: int | None
    ) -> tuple[np.ndarray, int]:
        embedder, queue = self.need_embedder()
        vocabulary = int(embedder._checkpoint.config["vocab_size"])
        sequences = self.token_ids(inputs, vocabulary, embedder.max_length)
        size = self._hidden_or(dimensions)
        if not sequences:
            return np.zeros((0, size), dtype=np.float32), 0
        tokens = sum(len(s) for s in sequences)
        return _unit_rows(await queue.submit(sequences, tokens), size), tokens

    def _hidden_or(self, dimensions: int | None) -> int:
        """Token ids come from clients that cut the vectors themselves: the whole vector
        unless they ask for fewer."""
        embedder, _ = self.need_embedder()
        return embedder._hidden_size if dimensions is None else self.dimensions(dimensions)

    async def judge(
        self,
        query: str,
        documents: list[str],
        *,
        instruction: str | None,
        max_document_tokens: int | None,
        long_documents: str | None,
        cut: bool = True,
    ) -> tuple[_Judged, int]:
        """The log-odds and spans of each document, and the prompts' token count.
        ``cut=False``: a document that would not be read whole within ``max_length`` (cut,
        or past ``max_chunks_per_document`` windows) is refused (413)."""
        reranker, queue = self.need_reranker()
        self.check_count(len(documents), "documents")
        given = {
            "instruction": instruction,
            "max_document_tokens": max_document_tokens,
            "long_documents": long_documents,
        }
        call: Any = {key: value for key, value in given.items() if value is not None}
        try:
            settings = reranker._settings(call)
            pairs = _pairs(query, documents)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc)) from exc
        if not pairs:
            return _Judged(np.zeros(0, dtype=np.float32), []), 0
        try:
            if cut:
                inputs, inverse = await asyncio.to_thread(reranker._tokenize, pairs, settings)
            else:
                inputs, inverse = await asyncio.to_thread(
                    _whole_documents, reranker, pairs, settings
                )
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc)) from exc
        tokens = sum(len(p) for p in inputs.prompts)
        log_odds = await queue.submit(inputs.prompts, tokens)
        return reranker._best_windows(inputs, log_odds, inverse), tokens

    async def classify(self, inputs: Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        """The log-odds of whole reranker prompts given as token ids."""
        reranker, queue = self.need_reranker()
        vocabulary = int(reranker._checkpoint.config["vocab_size"])
        sequences = self.token_ids(inputs, vocabulary, reranker.max_length)
        if not sequences:
            return np.zeros(0, dtype=np.float32), 0
        shared = _common_prefix(sequences)
        prompts = [RerankPrompt(s[:shared], s[shared:]) for s in sequences]
        tokens = sum(len(s) for s in sequences)
        log_odds = check_finite(np.asarray(await queue.submit(prompts, tokens)), "scores")
        return log_odds, tokens

    async def close(self) -> None:
        drained = await self.admission.drain(self.settings.drain_timeout_s)
        if not drained:
            logger.warning(
                "%d requests were still in flight after %g s of draining; they are dropped",
                self.admission.in_flight,
                self.settings.drain_timeout_s,
            )
        for queue in (self.embed_queue, self.rerank_queue):
            if queue is not None:
                await queue.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        for engine in self.owned:
            engine.close()


async def _disconnected(request: Request) -> None:
    """Returns once the client has closed the connection (its body was read already: the
    next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _guarded(request: Request, work: Awaitable[T], timeout_s: float) -> T:
    """``work``'s result; cancelled (and its queued model work dropped) when the client goes
    away or the deadline passes."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {task, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, gone, return_exceptions=True)
    if gone in done and not gone.cancelled():
        raise _ClientGone
    raise ApiError(
        504, f"the request did not finish within the server's deadline of {timeout_s:g} s"
    )


class _Admit:
    """ASGI middleware: the bounded queue (429 past it, 503 while draining) for the POST
    endpoints, which do model work."""

    def __init__(self, app: ASGIApp, service: _Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        admission = self.service.admission
        if not admission.enter():
            if admission.draining:
                response = error_response(503, "the server is shutting down")
            else:
                wait = admission.retry_after_s()
                response = error_response(
                    429,
                    f"the server is at its limit of {admission.limit} requests in flight: "
                    f"try again in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave()


class _Measure:
    """ASGI middleware: every answer counted and timed, refusals included."""

    def __init__(self, app: ASGIApp, service: _Service) -> None:
        self.app = app
        self.metrics = service.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - start)


def _open(
    model: Qwen3Embedder | Qwen3Reranker | ModelArgument | None,
    cls: type[Any],
    owned: list[Any],
    **options: Any,
) -> tuple[Any, str | None]:
    """The engine for ``model`` (loaded when a name or folder is given), and its name."""
    if model is None:
        return None, None
    if isinstance(model, cls):
        return model, str(model.model_path)
    engine = cls(model, **options)
    owned.append(engine)
    return engine, os.fspath(model)  # type: ignore[arg-type]


def create_app(
    embedding_model: Qwen3Embedder | ModelArgument | None = None,
    reranker_model: Qwen3Reranker | ModelArgument | None = None,
    *,
    backend: BackendChoice = "transformers",
    settings: ServeSettings | None = None,
    instruction: str | None = None,
    max_length: int = MAX_LENGTH,
    dimensions: int | None = None,
    embedding_model_name: str | None = None,
    reranker_model_name: str | None = None,
) -> FastAPI:
    """The server's ASGI app for one model or both.

    Args:
        embedding_model: A ``Qwen3Embedder``, or the hub id or folder of one to load.
        reranker_model: A ``Qwen3Reranker``, or the hub id or folder of one to load.
        backend: Where models loaded here run (engines given run where they were made).
        settings: Limits and the API key (``ServeSettings``); None: the defaults, no key.
        instruction: The task given to queries and rerank prompts when a request gives none
            (models loaded here); None: the engines' defaults.
        max_length: Longest input in tokens (models loaded here).
        dimensions: The embedding's length unless a request asks for fewer (loaded here).
        embedding_model_name: The embedding model's name in answers and ``GET /v1/models``
            (vLLM's ``--served-model-name``); None: the hub id or folder it was loaded from.
        reranker_model_name: The same for the reranker.

    A request's ``model`` must be absent, null, or name the endpoint's model: its name
    above, the hub id or folder it was loaded from, or that id's last path component (a
    ``:query`` or ``:document`` suffix is taken off first); any other gets 404. An engine
    given was loaded from its folder (``model_path``, a snapshot folder for a hub id): give it
    a name here for the clients to send.

    Engines given are the caller's to close; those loaded here are closed at shutdown.

    Raises:
        ValueError: No model, or a model name that is empty or ends in ``:query`` or
            ``:document``.
    """
    if embedding_model is None and reranker_model is None:
        raise ValueError("a server needs an embedding model, a reranker, or both")
    for kind, model, name in (
        ("embedding", embedding_model, embedding_model_name),
        ("reranker", reranker_model, reranker_model_name),
    ):
        if name is None:
            continue
        check_served_name(f"{kind}_model_name", name)
        if model is None:
            raise ValueError(f"{kind}_model_name={name!r} names no model: {kind}_model is None")
    settings = settings or ServeSettings()
    owned: list[Qwen3Embedder | Qwen3Reranker] = []
    common: dict[str, Any] = {"backend": backend, "max_length": max_length}
    rerank_options = {**common, **({} if instruction is None else {"instruction": instruction})}
    try:
        embedder, embedding_name = _open(
            embedding_model,
            Qwen3Embedder,
            owned,
            **common,
            instruction=instruction,
            dimensions=dimensions,
        )
        reranker, reranker_name = _open(reranker_model, Qwen3Reranker, owned, **rerank_options)
    except BaseException:
        for engine in owned:
            engine.close()
        raise
    served = {
        kind: _Served.of(kind, given, name)
        for kind, given, name in (
            ("embedding", embedding_name, embedding_model_name),
            ("reranker", reranker_name, reranker_model_name),
        )
        if given is not None
    }
    service = _Service(embedder, reranker, settings, served, owned)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.loop = asyncio.get_running_loop()
        yield
        await service.close()

    app = FastAPI(title="qwen3-rag", lifespan=lifespan)
    app.state.service = service
    _add_routes(app, service)
    _add_error_handlers(app)
    # The last added runs first: measured, then the key, then admission, then the body.
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, refuse=_refusal)
    app.add_middleware(_Admit, service=service)
    if settings.api_key is not None:
        app.add_middleware(BearerAuth, api_key=settings.api_key, refuse=_refusal)
    app.add_middleware(_Measure, service=service)
    return app


def _refusal(status: int, message: str, *, headers: dict[str, str] | None = None) -> ASGIApp:
    return error_response(status, message, headers=headers)  # a response is an ASGI app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(_ClientGone)
    async def client_gone(_: Request, exc: _ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; the metrics count it

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> Response:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        return error_response(422, "invalid request body: " + "; ".join(problems))

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> Response:
        logger.error(
            "%s %s failed: %s",
            request.method,
            request.url.path,
            redact(f"{type(exc).__name__}: {exc}"),
            exc_info=exc,
        )
        return error_response(500, f"the server failed on this request ({type(exc).__name__})")


def _rerank_answer(
    judged: _Judged,
    documents: list[str],
    top_n: int | None,
    return_documents: bool,
) -> list[dict[str, Any]]:
    log_odds = judged.log_odds
    order = np.argsort(-log_odds, kind="stable")[:top_n]
    scores = p_yes(log_odds[order])
    results = []
    for index, score in zip(order.tolist(), scores.tolist(), strict=True):
        row: dict[str, Any] = {"index": index, "relevance_score": score}
        if return_documents:
            row["document"] = {"text": documents[index]}
        row["log_odds"] = float(log_odds[index])
        row["span"] = list(judged.spans[index])
        results.append(row)
    return results


EMBEDDING_TYPES = ("float", "base64")
"""The Cohere ``embedding_types`` the server answers."""


def _cohere_types(asked: list[str] | None) -> list[str]:
    """The embedding types to answer, or a 422 naming those the server does not make."""
    if asked is None:
        return ["float"]
    supported = " and ".join(map(repr, EMBEDDING_TYPES))
    unknown = [kind for kind in asked if kind not in EMBEDDING_TYPES]
    if unknown or not asked:
        what = f"{', '.join(map(repr, unknown))} not supported" if unknown else "empty"
        raise ApiError(422, f"embedding_types: {what}: this server answers {supported}")
    return list(dict.fromkeys(asked))


def _cohere_cut(truncate: str | None) -> bool:
    """Whether Cohere's ``truncate`` lets an input over ``max_length`` be cut (at its end);
    a 422 for ``"START"``, a cut the engine does not make."""
    if truncate == "START":
        raise ApiError(
            422,
            'truncate: "START" (cutting the beginning of a long input) is not supported: '
            'use "END" (the default: keep the beginning) or "NONE" (refuse a long input)',
        )
    return truncate != "NONE"


def _tei_cut(truncate: bool | None, direction: str | None) -> bool:
    """Whether TEI's ``truncate`` lets an input over ``max_length`` be cut (at its end); a
    422 for ``truncation_direction: "Left"``, a cut the engine does not make."""
    if truncate is False:
        return False
    if direction is not None and direction.lower() == "left":
        raise ApiError(
            422,
            f'truncation_direction: "{direction}" (cutting the beginning of a long input) is '
            'not supported: use "Right" (the default: keep the beginning) or truncate: false '
            "(refuse a long input)",
        )
    return True


def _float_or_base64(vectors: np.ndarray, encoding: str) -> list[Any]:
    if encoding == "base64":  # little-endian float32, as the OpenAI SDK decodes it
        rows = vectors.astype("<f4")
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    rows_as_lists: list[Any] = vectors.tolist()
    return rows_as_lists


def _add_routes(app: FastAPI, service: _Service) -> None:
    deadline = service.settings.request_timeout_s

    @app.get("/health")
    async def health() -> Response:
        if service.admission.draining:
            return error_response(503, "the server is shutting down")
        return JSONResponse({"status": "ok", "models": service.names})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> Response:
        data = [
            {"id": name, "object": "model", "created": service.created, "owned_by": "qwen3-rag"}
            for name in service.names.values()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def rerank(request: Request, body: RerankRequest, version: str) -> Response:
        service.need_reranker(body.model)
        documents = body.texts()
        judged, tokens = await _guarded(
            request,
            service.judge(
                body.query,
                documents,
                instruction=body.instruction,
                max_document_tokens=body.max_tokens_per_doc,
                long_documents=body.long_documents,
                cut=_cohere_cut(body.truncate),
            ),
            deadline,
        )
        results = _rerank_answer(judged, documents, body.top_n, body.return_documents)
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "model": service.names["reranker"],
                "results": results,
                "meta": {
                    "api_version": {"version": version},
                    "billed_units": {"search_units": 1},
                },
                "usage": {"total_tokens": tokens},
            }
        )

    @app.post("/v1/rerank")
    async def rerank_v1(request: Request, body: RerankRequest) -> Response:
        return await rerank(request, body, "1")

    @app.post("/v2/rerank")
    async def rerank_v2(request: Request, body: RerankRequest) -> Response:
        return await rerank(request, body, "2")

    @app.post("/rerank")
    async def tei_rerank(request: Request, body: TeiRerankRequest) -> Response:
        judged, _ = await _guarded(
            request,
            service.judge(
                body.query,
                body.texts,
                instruction=body.instruction,
                max_document_tokens=None,
                long_documents=body.long_documents,
                cut=_tei_cut(body.truncate, body.truncation_direction),
            ),
            deadline,
        )
        answer = []
        for row in _rerank_answer(judged, body.texts, None, body.return_text):
            item: dict[str, Any] = {
                "index": row["index"],
                "score": row["log_odds"] if body.raw_scores else row["relevance_score"],
            }
            if body.return_text:
                item["text"] = row["document"]["text"]
            item["log_odds"], item["span"] = row["log_odds"], row["span"]
            answer.append(item)
        return JSONResponse(answer)

    @app.post("/embed")
    async def tei_embed(request: Request, body: TeiEmbedRequest) -> Response:
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        if body.prompt_name not in (None, "query", "document"):
            raise ApiError(
                400, f'prompt_name must be "query" or "document", got {body.prompt_name!r}'
            )
        vectors, _ = await _guarded(
            request,
            service.embed(
                texts,
                query=body.prompt_name == "query",
                instruction=body.instruction,
                dimensions=body.dimensions,
                normalize=body.normalize,
                cut=_tei_cut(body.truncate, body.truncation_direction),
            ),
            deadline,
        )
        return JSONResponse(vectors.tolist())

    @app.post("/v1/embeddings")
    async def openai_embeddings(request: Request, body: OpenAIEmbeddingRequest) -> Response:
        service.need_embedder(body.model)
        given = body.input
        work: Awaitable[tuple[np.ndarray, int]]
        if isinstance(given, list) and given and not isinstance(given[0], str):
            ids: Any = [given] if isinstance(given[0], int) else given
            if body.is_query() or body.instruction is not None:
                raise ApiError(
                    400, "token ids are embedded as given: a query's instruction cannot be added"
                )
            work = service.embed_ids(ids, body.dimensions)
        else:
            texts: Any = [given] if isinstance(given, str) else given
            work = service.embed(
                texts,
                query=body.is_query(),
                instruction=body.instruction,
                dimensions=body.dimensions,
            )
        vectors, tokens = await _guarded(request, work, deadline)
        data = [
            {"object": "embedding", "index": index, "embedding": row}
            for index, row in enumerate(_float_or_base64(vectors, body.encoding_format))
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": service.names["embedding"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.post("/v2/embed")
    async def cohere_embed(request: Request, body: CohereEmbedRequest) -> Response:
        service.need_embedder(body.model)
        types = _cohere_types(body.embedding_types)
        vectors, tokens = await _guarded(
            request,
            service.embed(
                body.texts,
                query=body.input_type == "search_query",
                instruction=body.instruction,
                dimensions=body.output_dimension,
                cut=_cohere_cut(body.truncate),
            ),
            deadline,
        )
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "embeddings": {kind: _float_or_base64(vectors, kind) for kind in types},
                "texts": body.texts,
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"input_tokens": tokens},
                },
                "response_type": "embeddings_by_type",
            }
        )

    @app.post("/classify")
    async def classify(request: Request, body: ClassifyRequest) -> Response:
        service.need_reranker(body.model)
        log_odds, tokens = await _guarded(request, service.classify(body.input), deadline)
        values = p_yes(log_odds) if body.use_activation else log_odds
        data = [
            {"index": index, "probs": [value], "num_classes": 1}
            for index, value in enumerate(values.tolist())
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": service.names["reranker"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def ray_deployment(
    embedding_model: ModelArgument | None = None,
    reranker_model: ModelArgument | None = None,
    *,
    deployment_options: dict[str, Any] | None = None,
    **app_options: Any,
) -> Any:
    """The server as a Ray Serve application: ``serve.run(ray_deployment(...))``.

    Each replica loads the models and runs ``create_app(embedding_model, reranker_model,
    **app_options)``; ``deployment_options`` go to ``serve.deployment`` (``num_replicas``,
    ``ray_actor_options``, ``autoscaling_config``, ...). Needs ``ray[serve]``.
    """
    from ray import serve

    def build() -> FastAPI:  # runs in each replica
        return create_app(embedding_model, reranker_model, **app_options)

    @serve.deployment(name="qwen3-rag", **(deployment_options or {}))
    @serve.ingress(build)
    class Qwen3RagServer:
        pass

    return Qwen3RagServer.bind()  # type: ignore[attr-defined]
