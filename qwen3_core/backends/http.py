"""HTTP to a fleet of model servers: round-robin over base URLs, retries, a concurrency limit.

One ``ServerPool`` holds one ``httpx.Client`` (connections reused across calls and threads)
and one ``httpx.AsyncClient`` per event loop (an async client's connections belong to the
loop that opened them). Retried: connection and read failures (the request is idempotent:
it only computes), 429 (after ``Retry-After`` when the server sends one) and 5xx. Anything
else, such as a 400 for a bad request, fails at once with the server's message.

A URL that fails to connect is skipped until its cool-down ends (doubling with each failure
in a row); then the next request tries it again, and a success makes it a full member again.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger("qwen3_core")

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_COOL_DOWN_S = 30.0
MAX_RETRY_AFTER_S = 60.0


class ServerError(RuntimeError):
    """A model server could not be reached, refused the request, or answered something that
    is not what the model should return."""


@dataclass
class _Endpoint:
    url: str
    failures: int = 0
    """Connection failures in a row."""
    down_until: float = 0.0
    """``time.monotonic()`` before which this URL is skipped."""


def check_base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """The base URLs as a list, each an http(s) URL without a trailing slash."""
    if base_url is None:
        raise ValueError("backend='server' needs base_url: the address of a vLLM server")
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("base_url is an empty list: give at least one server address")
    checked: list[str] = []
    for index, url in enumerate(urls):
        if not isinstance(url, str):
            raise TypeError(f"base_url[{index}] must be a str, got {type(url).__name__}")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"base_url {url!r} is not a URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"base_url {url!r} must be an http:// or https:// address")
        checked.append(url.rstrip("/"))
    return checked


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _server_message(response: httpx.Response) -> str:
    """The error text of a server answer, briefly (vLLM puts it in ``{"error": {...}}``)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            error = error.get("message", error)
        message = body.get("message", error) if not isinstance(error, str) else error
        return str(message)[:300]
    return str(body)[:300]


class ServerPool:
    """Sends JSON requests to one of several servers, with retries and a concurrency limit."""

    def __init__(
        self,
        base_url: str | Sequence[str] | None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        max_retries: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        self._endpoints = [_Endpoint(url) for url in check_base_urls(base_url)]
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self._backoff_s = backoff_s
        self._turn = itertools.count()
        self._lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client_options: dict[str, Any] = {
            "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            "limits": httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
        }
        self._client: httpx.Client | None = httpx.Client(**self._client_options)
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self._endpoints]

    # Choosing a server and reacting to what happened: shared by the sync and async paths.

    def _choose(self) -> tuple[_Endpoint, float]:
        """The next server in turn that is not cooling down, and 0; when all are, the one
        that comes back first and the seconds until then."""
        with self._lock:
            now = time.monotonic()
            start = next(self._turn)
            n = len(self._endpoints)
            for step in range(n):
                endpoint = self._endpoints[(start + step) % n]
                if endpoint.down_until <= now:
                    return endpoint, 0.0
            soonest = min(self._endpoints, key=lambda e: e.down_until)
            return soonest, soonest.down_until - now

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_s * 2**attempt, MAX_COOL_DOWN_S))

    def _connection_failed(self, endpoint: _Endpoint, exc: Exception) -> str:
        """Cool ``endpoint`` down; what happened, for the error if every try fails."""
        what = f"{endpoint.url}: {type(exc).__name__}: {exc}"
        with self._lock:
            now = time.monotonic()
            if endpoint.down_until > now:
                return what  # a request sent before the cool-down began: the same outage
            endpoint.failures += 1
            endpoint.down_until = now + self._backoff(endpoint.failures - 1)
        logger.warning("model server %s failed (%s); trying again later", endpoint.url, exc)
        return what

    def _answered(
        self, endpoint: _Endpoint, path: str, response: httpx.Response, attempt: int
    ) -> tuple[float | None, Any]:
        """``endpoint`` is up again. (None, the result) for a final answer (or a ServerError
        raised); (seconds to wait, what happened) for one to retry."""
        with self._lock:
            endpoint.failures, endpoint.down_until = 0, 0.0
        delay = self._retry_delay(response, attempt)
        if delay is None:
            return None, self._result(endpoint, path, response)
        return delay, f"{endpoint.url} answered {response.status_code}: {_server_message(response)}"

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying this answer; None when it is final."""
        if response.status_code not in RETRIED_STATUS:
            return None
        if response.status_code == 429:
            waited = _retry_after(response)
            if waited is not None:
                return waited
        return self._backoff(attempt)

    @staticmethod
    def _result(endpoint: _Endpoint, path: str, response: httpx.Response) -> Any:
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise ServerError(
                    f"{endpoint.url}{path} answered with a body that is not JSON: "
                    f"{response.text[:200]!r}"
                ) from exc
        raise ServerError(
            f"{endpoint.url}{path} answered {response.status_code}: {_server_message(response)}"
        )

    def _gave_up(self, path: str, attempts: int, last: str) -> ServerError:
        return ServerError(
            f"{path} failed on every try ({attempts} attempts over {', '.join(self.urls)}); "
            f"last: {last}"
        )

    # The sync path.

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of ``method path`` on one of the servers, retried as described."""
        client = self._client
        if client is None:
            raise RuntimeError("this server pool is closed")
        last = ""
        for attempt in range(self.max_retries + 1):
            endpoint, wait = self._choose()
            if wait > 0:
                time.sleep(wait)
            try:
                with self._slots:
                    response = client.request(method, endpoint.url + path, json=body)
            except httpx.TransportError as exc:
                last = self._connection_failed(endpoint, exc)
                continue
            delay, outcome = self._answered(endpoint, path, response, attempt)
            if delay is None:
                return outcome
            last = outcome
            time.sleep(delay)
        raise self._gave_up(path, self.max_retries + 1, last)

    # The async path.

    def _async_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._client is None:
            raise RuntimeError("this server pool is closed")
        loop = asyncio.get_running_loop()
        with self._lock:
            pair = self._async.get(loop)
            if pair is None:
                pair = (
                    httpx.AsyncClient(**self._client_options),
                    asyncio.Semaphore(self.max_concurrency),
                )
                self._async[loop] = pair
        return pair

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        """``request`` on the running event loop, without blocking it."""
        client, slots = self._async_client()
        last = ""
        for attempt in range(self.max_retries + 1):
            endpoint, wait = self._choose()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with slots:
                    response = await client.request(method, endpoint.url + path, json=body)
            except httpx.TransportError as exc:
                last = self._connection_failed(endpoint, exc)
                continue
            delay, outcome = self._answered(endpoint, path, response, attempt)
            if delay is None:
                return outcome
            last = outcome
            await asyncio.sleep(delay)
        raise self._gave_up(path, self.max_retries + 1, last)

    def close(self) -> None:
        """Close the connections; the pool is unusable afterwards. Async clients of loops
        still running are closed by their loop's garbage collection."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self._async.clear()
