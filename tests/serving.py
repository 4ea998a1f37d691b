"""A ``qwen3-rag serve`` app run by uvicorn on a loopback port, in a thread of the test
process, for the server tests (tests/test_serve_*.py)."""

from __future__ import annotations

import re
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from qwen3_core.testing import free_port


class RunningServer:
    """uvicorn serving ``app`` on 127.0.0.1 until ``stop`` (or the end of a ``with``)."""

    def __init__(self, app: Any, *, graceful_s: int = 10) -> None:
        self.app = app
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=graceful_s,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def metric(self, name: str, **labels: str) -> float:
        """A sample of ``GET /metrics`` (0 when absent), e.g.
        ``metric("qwen3_rag_inputs_total", model="reranker")``."""
        headers = getattr(self, "headers", {})
        text = httpx.get(self.url + "/metrics", headers=headers).text
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        pattern = rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? ([0-9.e+-]+)$"
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0
