"""Internal: HTTP to a fleet of model servers: round-robin over base URLs, retries, a
concurrency limit.

One ``ServerPool`` holds one ``httpx.Client`` (connections reused across calls and threads)
and one ``httpx.AsyncClient`` per event loop (an async client's connections belong to the
loop that opened them). Retried, by tenacity: connection and read failures (the request is
idempotent: it only computes), 429 (after ``Retry-After`` when the server sends one) and 5xx.
Anything else, such as a 400 for a bad request, fails at once with the server's message.
A request, its retries and the waits between them included, ends within ``timeout``.

A URL that fails to connect is skipped until its cool-down ends (doubling with each failure
in a row); then the next request tries it again, and a success makes it a full member again.

No credential is ever shown: a URL's user information is sent as basic auth, never as part
of the address, and messages show it as ``***``; the API key and anything that looks like a
credential in a quoted server answer are hidden too (``qwen3_core.redaction``).
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import tenacity

from qwen3_core.backend_options import check_base_urls
from qwen3_core.errors import ServerError
from qwen3_core.redaction import redact, url_secrets

logger = logging.getLogger("qwen3_core")

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_COOL_DOWN_S = 30.0
MAX_RETRY_AFTER_S = 60.0
QUOTED_CHARS = 300
"""How much of a server's answer an error quotes."""


class _TryFailed(Exception):
    """A try worth repeating: what happened, and how long to wait before the next (None: the
    exponential back-off)."""

    def __init__(self, what: str, wait_s: float | None) -> None:
        super().__init__(what)
        self.wait_s = wait_s


@dataclass
class _Endpoint:
    url: str
    """The address requests go to, without user information."""
    shown: str
    """The address as messages show it (user information as ``***``)."""
    auth: httpx.BasicAuth | None
    """The user information of the address as given, sent as basic auth."""
    failures: int = 0
    """Connection failures in a row."""
    down_until: float = 0.0
    """``time.monotonic()`` before which this URL is skipped."""


def plural(count: int, noun: str) -> str:
    """``"1 attempt"``, ``"2 attempts"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _endpoint(url: str) -> _Endpoint:
    parsed = httpx.URL(url)
    auth = httpx.BasicAuth(parsed.username, parsed.password) if parsed.userinfo else None
    bare = str(parsed.copy_with(username=None, password=None)).rstrip("/")
    return _Endpoint(bare, redact(url), auth)


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
    return max(seconds, 0.0)


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
        urls = check_base_urls(base_url)
        self._endpoints = [_endpoint(url) for url in urls]
        self._secrets = [api_key, *(secret for url in urls for secret in url_secrets(url))]
        self.timeout = timeout
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
            asyncio.AbstractEventLoop,
            tuple[httpx.AsyncClient, asyncio.Semaphore, AsyncGenerator[None, None]],
        ] = weakref.WeakKeyDictionary()

    @property
    def urls(self) -> list[str]:
        """The server addresses as messages show them."""
        return [e.shown for e in self._endpoints]

    def quote(self, value: Any, limit: int = QUOTED_CHARS) -> str:
        """``value`` as text for a message: credentials hidden, at most ``limit`` characters."""
        return redact(str(value), self._secrets)[:limit]

    # The fleet: choosing a server, and what a failure means for it.

    def _choose(self) -> _Endpoint:
        """The next server in turn that is not cooling down; when all are, the one that comes
        back first (the wait before this try lasted until then)."""
        with self._lock:
            now = time.monotonic()
            start = next(self._turn)
            n = len(self._endpoints)
            for step in range(n):
                endpoint = self._endpoints[(start + step) % n]
                if endpoint.down_until <= now:
                    return endpoint
            return min(self._endpoints, key=lambda e: e.down_until)

    def _until_available(self) -> float:
        """Seconds until some server's cool-down ends (0 when one is up)."""
        with self._lock:
            soonest = min(e.down_until for e in self._endpoints)
            return max(soonest - time.monotonic(), 0.0)

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_s * 2**attempt, MAX_COOL_DOWN_S))

    def _connection_failed(self, endpoint: _Endpoint, exc: Exception) -> _TryFailed:
        """Cool ``endpoint`` down; the failure to retry (another server may be up at once)."""
        error = self.quote(f"{type(exc).__name__}: {exc}")
        with self._lock:
            now = time.monotonic()
            outage = endpoint.down_until > now  # a request sent before the cool-down began
            if not outage:
                endpoint.failures += 1
                endpoint.down_until = now + self._backoff(endpoint.failures - 1)
        if not outage:
            logger.warning("model server %s failed (%s); trying again later", endpoint.shown, error)
        return _TryFailed(f"{endpoint.shown}: {error}", 0.0)

    def _answered(self, endpoint: _Endpoint, path: str, response: httpx.Response) -> Any:
        """The JSON of a final answer; ServerError for a refusal; _TryFailed for one to retry.
        Any answer shows ``endpoint`` is up again."""
        with self._lock:
            endpoint.failures, endpoint.down_until = 0, 0.0
        status = response.status_code
        if status in RETRIED_STATUS:
            wait = _retry_after(response) if status == 429 else None
            asked = "" if wait is None else f" (Retry-After: {wait:g} s)"
            message = self._server_message(response)
            raise _TryFailed(f"{endpoint.shown} answered {status}: {message}{asked}", wait)
        if not response.is_success:
            message = self._server_message(response)
            raise ServerError(f"{endpoint.shown}{path} answered {status}: {message}")
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{endpoint.shown}{path} answered with a body that is not JSON: "
                f"{self.quote(repr(response.text))}"
            ) from exc

    def _server_message(self, response: httpx.Response) -> str:
        """The error text of a server answer, briefly (vLLM puts it in ``{"error": {...}}``)."""
        try:
            body = response.json()
        except ValueError:
            return self.quote(response.text or response.reason_phrase)
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict):
                error = error.get("message", error)
            message = body.get("message", error) if not isinstance(error, str) else error
            return self.quote(message)
        return self.quote(body)

    # The retry policy, shared by the sync and async paths.

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Before the next try: what the failure asks for (none after a connection failure,
        Retry-After after a 429, else the back-off), and at least until a server is up."""
        assert state.outcome is not None
        failure = state.outcome.exception()
        asked = failure.wait_s if isinstance(failure, _TryFailed) else None
        wait = self._backoff(state.attempt_number - 1) if asked is None else asked
        return max(min(wait, MAX_RETRY_AFTER_S), self._until_available())

    def _policy(self, method: str, path: str) -> dict[str, Any]:
        """Tenacity's settings: the tries of one request."""

        def give_up(state: tenacity.RetryCallState) -> NoReturn:
            assert state.outcome is not None
            attempts = f"{plural(state.attempt_number, 'attempt')} over {', '.join(self.urls)}"
            if state.attempt_number <= self.max_retries:
                why = f"did not succeed within timeout={self.timeout:g} s ({attempts})"
            else:
                why = f"failed on every try ({attempts})"
            last = state.outcome.exception()
            raise ServerError(f"{method} {path} {why}; last: {last}") from last

        return {
            "retry": tenacity.retry_if_exception_type(_TryFailed),
            "stop": (
                tenacity.stop_after_attempt(self.max_retries + 1)
                | tenacity.stop_before_delay(self.timeout)
            ),
            "wait": self._wait,
            "retry_error_callback": give_up,
        }

    def _try(self, state: tenacity.RetryCallState) -> tuple[_Endpoint, dict[str, Any]]:
        """The server for this try, and the request's settings: its credentials, and the time
        left of the request's ``timeout``."""
        endpoint = self._choose()
        left = max(self.timeout - (time.monotonic() - state.start_time), 0.001)
        timeout = httpx.Timeout(left, connect=min(left, 10.0))
        return endpoint, {"auth": endpoint.auth, "timeout": timeout}

    # The sync path.

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of ``method path`` on one of the servers, retried as described."""
        client = self._client
        if client is None:
            raise RuntimeError("this server pool is closed")
        with self._slots:  # held over the retries: ``timeout`` counts from the first try
            for attempt in tenacity.Retrying(**self._policy(method, path)):
                with attempt:
                    endpoint, settings = self._try(attempt.retry_state)
                    try:
                        url = endpoint.url + path
                        response = client.request(method, url, json=body, **settings)
                    except httpx.TransportError as exc:
                        raise self._connection_failed(endpoint, exc) from exc
                    return self._answered(endpoint, path, response)
        raise AssertionError("unreachable: the last try returns or raises")

    # The async path.

    async def _async_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._client is None:
            raise RuntimeError("this server pool is closed")
        loop = asyncio.get_running_loop()
        with self._lock:
            made = self._async.get(loop)
            new = made is None
            if made is None:
                client = httpx.AsyncClient(**self._client_options)
                made = (client, asyncio.Semaphore(self.max_concurrency), _closing(client))
                self._async[loop] = made
        if new:
            await anext(made[2])  # parked for the loop's life: the loop closes the client
        return made[0], made[1]

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        """``request`` on the running event loop, without blocking it."""
        client, slots = await self._async_client()
        async with slots:
            async for attempt in tenacity.AsyncRetrying(**self._policy(method, path)):
                with attempt:
                    endpoint, settings = self._try(attempt.retry_state)
                    try:
                        url = endpoint.url + path
                        response = await client.request(method, url, json=body, **settings)
                    except httpx.TransportError as exc:
                        raise self._connection_failed(endpoint, exc) from exc
                    return self._answered(endpoint, path, response)
        raise AssertionError("unreachable: the last try returns or raises")

    def close(self) -> None:
        """Close the connections; the pool is unusable afterwards. Each async client is
        closed on its own loop: when its loop shuts down its async generators (as
        ``asyncio.run`` does at its end), or, for a loop still running, soon after this."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self._async.clear()


async def _closing(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Waits at its ``yield`` while its event loop lives. An event loop closes the async
    generators it started when it shuts down (``asyncio.run`` does), and one dropped while its
    loop runs is closed on that loop: either way ``client`` is closed on its own loop, rather
    than left, its connections open, to the garbage collector once the loop is gone."""
    try:
        yield
    finally:
        await client.aclose()
