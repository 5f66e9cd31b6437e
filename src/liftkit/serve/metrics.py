"""Prometheus metrics of one server, in their own registry (several apps may share a process).

Requests and latency by route and by model; texts, rows per merged batch and reloads by model (a label per
model a server hosts: bounded by the models an admin loads)."""

from __future__ import annotations

import re

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROUTES = {"/", "/predict", "/v1/classify", "/rerank", "/health", "/info", "/metrics", "/docs", "/openapi.json"}
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)  # seconds
# routes with a model's name in the path, counted under their template
TEMPLATES = [
    (re.compile(r"/models/[^/]+/(predict|rerank|info)"), "/models/{name}/"),
    (re.compile(r"/admin/models(/[^/]+)?"), "/admin/models"),
]


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
            buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "lift_batch_size",
            "Texts per merged batch of requests",
            registry=self.registry,
            buckets=ROW_BUCKETS,
        )
        self.batch_tokens = Histogram(
            "lift_batch_tokens",
            "Texts x longest text's tokens, per merged batch",
            registry=self.registry,
            buckets=(16, 64, 256, 1024, 4096, 16384, 65536),
        )
        self.queue_depth = Gauge("lift_queue_depth", "Requests admitted and not yet answered", registry=self.registry)
        self.texts = Counter("lift_texts_total", "Texts classified", registry=self.registry)
        by_model = {"labelnames": ["model"], "registry": self.registry}
        self.model_requests = Counter("lift_model_requests_total", "Requests answered, by model", **by_model)
        self.model_latency = Histogram(
            "lift_model_duration_seconds",
            "Time from queueing a request's texts to their logits, by model",
            buckets=LATENCY_BUCKETS,
            **by_model,
        )
        self.model_texts = Counter("lift_model_texts_total", "Texts classified, by model", **by_model)
        self.model_rows = Histogram(
            "lift_model_batch_rows", "Rows of one model in a merged batch, by model", buckets=ROW_BUCKETS, **by_model
        )
        self.reloads = Counter(
            "lift_model_reloads_total", "Models loaded again after --max-models unloaded them, by model", **by_model
        )
        self.models_loaded = Gauge("lift_models_loaded", "Models held in memory", registry=self.registry)

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else _template(path)
        method = method if method in ("GET", "POST", "HEAD") else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_batch(self, texts: int, tokens: int, by_model: dict[str, int]) -> None:
        self.batch_size.observe(texts)
        self.batch_tokens.observe(tokens)
        for model, rows in by_model.items():
            self.model_rows.labels(model).observe(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


def _template(path: str) -> str:
    """A route with a name in it, as its template; any other path "other" (unknown paths must not
    grow the label set without bound)."""
    for pattern, template in TEMPLATES:
        match = pattern.fullmatch(path)
        if match:
            return template + match.group(1) if template.endswith("/") else template
    return "other"
