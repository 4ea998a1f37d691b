"""A stand-in model server for the server-backend tests of the main suite.

``StandInServer`` is a small HTTP server speaking the two vLLM endpoints the client uses
(``/v1/embeddings``, ``/classify``), computing with the real tiny models through the
transformers backend. It can be told to answer with faults (a status, headers, a raw body)
and be stopped and restarted on the same port, which a real server cannot do in seconds.
vLLM's own server, for the equality tests of the vLLM CI step, is
``qwen3_core.testing.VllmServer``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwen3_core.backends.transformers import TransformersEmbeddingBackend, TransformersRerankBackend
from qwen3_core.loading import load_model
from qwen3_core.testing import free_port
from qwen3_core.tokenization import RerankPrompt
from tests.options import CPU


@dataclass
class Fault:
    """One scripted answer instead of the computed one."""

    status: int = 200
    body: bytes | None = None
    """Raw body; None: the computed answer (e.g. a 200 after a delay)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Changes the computed answer: a server answering in another form."""
    echo_headers: bool = False
    """Answer ``status`` with the request's headers in the error message, as a proxy that
    echoes them does."""


class StandInServer:
    """``/v1/embeddings`` and ``/classify`` on the real tiny models, with scripted faults."""

    def __init__(self, embedding: Path, reranker: Path, *, port: int | None = None) -> None:
        self.embedding_name, self.reranker_name = str(embedding), str(reranker)
        self._embed = TransformersEmbeddingBackend(
            load_model(embedding, "embedding", CPU), show_progress=False
        )
        self._rerank = TransformersRerankBackend(
            load_model(reranker, "reranker", CPU), show_progress=False, share_prefix=False
        )
        self.faults: deque[Fault] = deque()
        self.requests: list[tuple[str, int]] = []  # (path, inputs) of every POST answered
        self.authorizations: list[str | None] = []  # the Authorization of every POST
        self.ignores_use_activation = False
        """As a vLLM too old to know ``use_activation``: P(yes) whatever the request asks."""
        self.port = port or free_port()
        self._httpd: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandInServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.authorizations.append(self.headers.get("Authorization"))
                    fault = server.faults.popleft() if server.faults else None
                if fault is not None:
                    time.sleep(fault.delay_s)
                    if fault.echo_headers:
                        message = f"rejected request with headers {dict(self.headers)}"
                        payload = json.dumps({"error": {"message": message}}).encode()
                        self._send(fault.status, payload, fault.headers)
                        return
                    if fault.body is not None or fault.status != 200:
                        self._send(fault.status, fault.body or b"{}", fault.headers)
                        return
                status, answer = server.answer(self.path, body)
                if fault is not None and fault.rewrite is not None:
                    answer = fault.rewrite(answer)
                self._send(status, json.dumps(answer).encode(), {})

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """What vLLM answers, as far as the client reads it."""
        inputs = [np.asarray(ids, dtype=np.int64) for ids in body["input"]]
        with self._lock:
            self.requests.append((path, len(inputs)))
        if path == "/v1/embeddings" and body["model"] == self.embedding_name:
            states = self._embed.embed(inputs)
            states /= np.linalg.norm(states, axis=1, keepdims=True)  # vLLM normalises
            data = [{"index": i, "embedding": v.tolist()} for i, v in enumerate(states)]
            return 200, {"object": "list", "data": data}
        if path == "/classify" and body["model"] == self.reranker_name:
            empty = np.zeros(0, dtype=np.int64)
            log_odds = self._rerank.logits([RerankPrompt(empty, ids) for ids in inputs])
            # As vLLM's folded yes/no classifier: its sigmoid in float32 unless the request
            # turns the activation off, and then the raw logit, still under "probs".
            if body.get("use_activation", True) or self.ignores_use_activation:
                log_odds = torch.sigmoid(torch.from_numpy(log_odds)).numpy()
            data = [
                {"index": i, "probs": [float(v)], "num_classes": 1} for i, v in enumerate(log_odds)
            ]
            return 200, {"object": "list", "data": data}
        message = f"The model `{body['model']}` does not exist."
        return 404, {"error": {"message": message, "type": "NotFoundError", "code": 404}}
