"""Prometheus metrics a worker exposes itself (the API also re-exports the Redis counters)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PROCESSED = Counter(
    "crm_worker_events_processed",
    "Input messages handled by this worker, by topic and outcome",
    ["topic", "outcome"],
)
BATCH_SECONDS = Histogram(
    "crm_worker_batch_seconds",
    "Time to process one micro-batch",
    ["topic"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
