"""Prometheus metrics of one server, in their own registry (several apps may share a process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROUTES = {"/", "/predict", "/v1/classify", "/health", "/info", "/metrics", "/docs", "/openapi.json"}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lift_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lift_request_duration_seconds",
            "Time from request to response, by method and route",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "lift_batch_size",
            "Texts per merged batch of requests",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.batch_tokens = Histogram(
            "lift_batch_tokens",
            "Texts x longest text's tokens, per merged batch",
            registry=self.registry,
            buckets=(16, 64, 256, 1024, 4096, 16384, 65536),
        )
        self.queue_depth = Gauge("lift_queue_depth", "Requests admitted and not yet answered", registry=self.registry)
        self.texts = Counter("lift_texts_total", "Texts classified", registry=self.registry)

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"  # unknown paths must not grow the label set without bound
        method = method if method in ("GET", "POST", "HEAD") else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_batch(self, texts: int, tokens: int) -> None:
        self.batch_size.observe(texts)
        self.batch_tokens.observe(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST
