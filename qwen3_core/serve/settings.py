"""Internal (import its public names from ``qwen3_core.serve``): what a server is told at
start-up, its limits and its key. Standard library only, so that the command line can check
them before the web stack and the engine are imported."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
QUERY_SUFFIX = ":query"
"""Ends a request's ``model`` to say that it sends queries (for clients that cannot add a
field to the body)."""
DOCUMENT_SUFFIX = ":document"
"""Ends a request's ``model`` to say that it sends documents."""


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits and credentials.

    A request past a limit is refused with a 4xx before any model work: past
    ``max_request_bytes`` or ``max_documents`` with 413; past ``max_concurrent_requests``
    (the bounded queue: requests admitted and not yet answered) with 429 and a
    ``Retry-After``; one that runs past ``request_timeout_s`` gets 504 and its queued work is
    dropped.
    """

    api_key: str | None = None
    """The Bearer key every request but ``GET /health`` must carry; None: no key."""
    max_concurrent_requests: int = 512
    """Requests admitted at once (queued or computing); one more gets 429."""
    max_documents: int = 1000
    """Most documents (rerank) or texts (embed) in one request."""
    max_request_bytes: int = 8 * 1024 * 1024
    """Largest request body."""
    request_timeout_s: float = 60.0
    """A request's deadline, from admission to answer."""
    max_merged_tokens: int = 32768
    """Most tokens of queued requests merged into one engine call (a single larger request
    runs alone); the engine cuts each call into its own token-budget batches."""
    drain_timeout_s: float = 30.0
    """At shutdown: how long the requests in flight may take to finish."""

    def __post_init__(self) -> None:
        for name in (
            "max_concurrent_requests",
            "max_documents",
            "max_request_bytes",
            "max_merged_tokens",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("request_timeout_s", "drain_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it out for no key)")

    def __repr__(self) -> str:  # the key never shows, not even in a repr
        key = None if self.api_key is None else "***"
        return (
            f"ServeSettings(api_key={key!r}, max_concurrent_requests="
            f"{self.max_concurrent_requests}, max_documents={self.max_documents}, "
            f"max_request_bytes={self.max_request_bytes}, request_timeout_s="
            f"{self.request_timeout_s:g}, max_merged_tokens={self.max_merged_tokens}, "
            f"drain_timeout_s={self.drain_timeout_s:g})"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8,
    ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_served_name(option: str, name: object) -> None:
    """Raise ValueError, naming ``option``, unless ``name`` can be a model's served name: a
    non-empty str that does not end in ``QUERY_SUFFIX`` or ``DOCUMENT_SUFFIX``, which a
    request's ``model`` adds and the server takes off before comparing names."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{option} must be a non-empty name, got {name!r}")
    if name.endswith((QUERY_SUFFIX, DOCUMENT_SUFFIX)):
        raise ValueError(
            f"{option} {name!r} may not end in {QUERY_SUFFIX!r} or {DOCUMENT_SUFFIX!r}: "
            "requests add those to say what they send"
        )
