"""Internal: Bearer keys. Every request but ``GET /health`` carries ``Authorization: Bearer
KEY`` when the server has a key; a missing or wrong one gets 401 before the body is read.

The key is compared in constant time and never written anywhere: not in a log line, not in an
error message, not in a repr (``ServeSettings`` hides it; the command line takes it from
``--api-key`` or ``QWEN3_RAG_API_KEY``). Access logs show paths, never headers.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})
"""Answered without a key: a load balancer's health check carries none."""


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if any."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class BearerAuth:
    """ASGI middleware: 401 unless the request carries the key."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str,
        refuse: Callable[..., ASGIApp],
    ) -> None:
        self.app = app
        self._key = api_key.encode()
        self.refuse = refuse

    def __repr__(self) -> str:
        return "BearerAuth(api_key='***')"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers") or [])
        if token is None:
            message = "this server needs an API key: send the header Authorization: Bearer KEY"
        elif hmac.compare_digest(token.encode(), self._key):
            await self.app(scope, receive, send)
            return
        else:
            message = "the API key is wrong"
        headers = {"WWW-Authenticate": "Bearer"}
        await self.refuse(401, message, headers=headers)(scope, receive, send)
