"""Prometheus metrics of one app: requests by route and status, latency, the model served.

Each app gets its own ``CollectorRegistry``, so several apps in one process (tests, reloads)
never share or clash on counters.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the app)

# seconds; the service aims at p99 <= 20 ms, so the low end is fine-grained
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The app's collectors. ``render(service)`` refreshes the model gauges and returns the text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("musicrec_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("musicrec_request_duration_seconds", "Time to answer a request (seconds)",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.model = Gauge("musicrec_model_info", "The model being served (value 1; labels describe it)",
                           ["model", "version", "item_level", "retrieval"], registry=r)
        self.loaded = Gauge("musicrec_model_loaded_timestamp_seconds", "When the served model was loaded (Unix s)",
                            registry=r)
        self.items = Gauge("musicrec_model_items", "Items in the served model's catalogue", registry=r)
        self.reloads = Counter("musicrec_model_reloads", "Model reloads by result (ok / failed)", ["result"],
                               registry=r)

    def render(self, service) -> bytes:
        info = service.health()
        self.model.clear()
        self.model.labels(info["model"], info["version"], info["item_level"], info["retrieval"]).set(1)
        self.loaded.set(service.loaded_at)
        self.items.set(info["n_items"])
        return generate_latest(self.registry)


def route_label(scope) -> str:
    """The route template a routed request matched (e.g. ``/v1/items/{item_id}/similar``), so labels
    stay few whatever the ids; "unrouted" for unknown paths and requests refused before routing
    (401, 413)."""
    return getattr(scope.get("route"), "path", None) or "unrouted"


class MetricsMiddleware:
    """Counts every request by route and status and times it (ASGI middleware, outermost)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_label(scope)
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - start)
