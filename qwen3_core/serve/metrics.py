"""Internal: the server's Prometheus metrics, on a registry of its own (several apps in one
process, as in tests or a Ray replica, each count their own).

- ``qwen3_rag_requests_total{endpoint,status}`` and
  ``qwen3_rag_request_duration_seconds{endpoint}``: every answered request, refusals included.
- ``qwen3_rag_batch_requests{model}``, ``qwen3_rag_batch_inputs{model}``: requests and inputs
  merged into each engine call.
- ``qwen3_rag_queue_depth{model}``: requests waiting for the engine;
  ``qwen3_rag_requests_in_flight``: requests admitted and not yet answered.
- ``qwen3_rag_tokens_total{model}``, ``qwen3_rag_inputs_total{model}``: what the engine computed;
  ``qwen3_rag_dropped_total{model}``: requests dropped from the queue before any work because
  their client went away or their deadline passed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
ENDPOINTS = frozenset(
    {
        "/v1/rerank",
        "/v2/rerank",
        "/rerank",
        "/embed",
        "/v1/embeddings",
        "/v2/embed",
        "/classify",
        "/v1/models",
        "/health",
        "/metrics",
    }
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The metrics of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "qwen3_rag_requests", "Requests answered", ["endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "qwen3_rag_request_duration_seconds",
            "Time from the request's arrival to its answer",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            "qwen3_rag_batch_requests",
            "Requests merged into one engine call",
            ["model"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_inputs = Histogram(
            "qwen3_rag_batch_inputs",
            "Inputs (texts or prompts) in one engine call",
            ["model"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "qwen3_rag_queue_depth", "Requests waiting for the engine", ["model"], registry=registry
        )
        self.in_flight = Gauge(
            "qwen3_rag_requests_in_flight",
            "Requests admitted and not yet answered",
            registry=registry,
        )
        self.tokens = Counter(
            "qwen3_rag_tokens", "Tokens the engine computed", ["model"], registry=registry
        )
        self.inputs = Counter(
            "qwen3_rag_inputs", "Inputs the engine computed", ["model"], registry=registry
        )
        self.dropped = Counter(
            "qwen3_rag_dropped",
            "Requests dropped from the queue before any work (client gone or deadline passed)",
            ["model"],
            registry=registry,
        )

    def endpoint(self, path: str) -> str:
        """The label of ``path``: itself for a known endpoint, else "other" (the labels stay
        few whatever paths clients try)."""
        return path if path in ENDPOINTS else "other"

    def observe(self, path: str, status: int, seconds: float) -> None:
        endpoint = self.endpoint(path)
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
