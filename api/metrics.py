"""``/metrics``: the API's own request metrics plus the pipeline counters workers keep in Redis.

Each app has its own registry (several apps live in one test process). Route labels are route
templates (``/v1/customers/{customer_id}``), never raw paths, so cardinality stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.api import PipelineCounter, ThroughputSample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("crm_api_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "crm_api_request_duration_seconds", "Time to answer (streams: their lifetime)",
            ["method", "route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI (no ``BaseHTTPMiddleware``), so streaming answers are not buffered."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_pipeline(counters: Iterable[PipelineCounter],
                    latest: ThroughputSample | None) -> bytes:
    """The workers' counters (from Redis) in the Prometheus text format.

    >>> print(render_pipeline([PipelineCounter(topic="shop.clicks", outcome="applied",
    ...                                        count=3)], None).decode().splitlines()[-1])
    crm_events_processed_total{topic="shop.clicks",outcome="applied"} 3
    """
    lines = [
        "# HELP crm_events_processed_total Input messages handled by all workers, by outcome.",
        "# TYPE crm_events_processed_total counter",
    ]
    lines += [f'crm_events_processed_total{{topic="{_label(c.topic)}",'
              f'outcome="{_label(c.outcome)}"}} {c.count}' for c in counters]
    if latest is not None:
        lines += ["# HELP crm_pipeline_events_per_second Latest throughput sample of the workers.",
                  "# TYPE crm_pipeline_events_per_second gauge",
                  f"crm_pipeline_events_per_second {latest.events_per_s}"]
        if latest.lag is not None:
            lines += ["# HELP crm_pipeline_consumer_lag Latest consumer lag (messages).",
                      "# TYPE crm_pipeline_consumer_lag gauge",
                      f"crm_pipeline_consumer_lag {latest.lag}"]
    return ("\n".join(lines) + "\n").encode()
