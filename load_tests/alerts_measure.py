"""The alert benchmark's measurements: each rate's probe latencies and CPU shares, and what
the workers' own Prometheus metrics (``CRM_WORKER_METRICS_PORT``) say about their batches.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from load_tests.alerts_traffic import AlertWatch
from load_tests.measure import metric_total, percentile

GOAL_P99_MS = 100.0


@dataclass
class Point:
    """One offered rate's results."""

    rate: float
    achieved: float
    total_ms: list[float]
    emitted_ms: list[float]
    received_ms: list[float]
    probes: int
    worker_cpu: float | None  # share of one core, summed over the workers
    broker_cpu: float | None = None  # share of one core (a broker this benchmark started)
    recommender_cpu: float | None = None  # share of one core, the workers' recommender processes
    # When each alerted probe was sent, in seconds from the rate's first probe (as total_ms).
    sent_s: list[float] = field(default_factory=list)
    # Where the workers' batches spent their time (workers this benchmark started).
    steps: dict[str, StepTimes] | None = None

    @property
    def missing(self) -> int:
        return self.probes - len(self.total_ms)

    @property
    def met(self) -> bool:
        return bool(self.total_ms) and not self.missing and (
            percentile(self.total_ms, 99) <= GOAL_P99_MS)


#: A step taking longer than this (a bound of the histogram's buckets) counts as slow.
SLOW_STEP_S = 0.02


@dataclass
class StepTimes:
    """One batch step's time, summed over the workers' batches."""

    batches: float = 0.0
    seconds: float = 0.0
    slow: float = 0.0  # batches that spent more than SLOW_STEP_S in the step

    def __sub__(self, before: StepTimes) -> StepTimes:
        return StepTimes(self.batches - before.batches, self.seconds - before.seconds,
                         self.slow - before.slow)

    def __add__(self, other: StepTimes) -> StepTimes:
        return StepTimes(self.batches + other.batches, self.seconds + other.seconds,
                         self.slow + other.slow)


def step_times_from(metrics_text: str) -> dict[str, StepTimes]:
    """The batch steps' totals in one worker's Prometheus metrics text, by the ``step`` label
    of ``crm_worker_batch_step_seconds`` in the order the worker lists them (every step from
    its start); a step the text does not name took no time."""
    steps: dict[str, StepTimes] = defaultdict(StepTimes)
    fast: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "crm_worker_batch_step_seconds":
            continue
        for sample in family.samples:
            step = sample.labels.get("step")
            if step is None:
                continue
            if sample.name.endswith("_count"):
                steps[step].batches = sample.value
            elif sample.name.endswith("_sum"):
                steps[step].seconds = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == SLOW_STEP_S:
                fast[step] = sample.value
    for step, times in steps.items():
        times.slow = times.batches - fast.get(step, times.batches)
    return steps


def worker_metrics(ports: list[int]) -> list[str]:
    """The Prometheus metrics text of each local worker serving metrics on ``ports``."""
    texts = []
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            texts.append(reply.read().decode())
    return texts


def scrape_step_times(ports: list[int]) -> dict[str, StepTimes]:
    """The batch steps' totals so far, summed over the workers serving metrics on ``ports``."""
    total: dict[str, StepTimes] = defaultdict(StepTimes)
    for text in worker_metrics(ports):
        for step, times in step_times_from(text).items():
            total[step] += times
    return total


def wait_until_processed(ports: list[int], count: int, timeout_s: float) -> None:
    """Wait until the workers serving metrics on ``ports`` have handled ``count`` input
    messages between them (``crm_worker_events_processed``, every outcome), so the next rate
    starts without a backlog; gives up quietly after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sum(metric_total(text, "crm_worker_events_processed_total")
                   for text in worker_metrics(ports))
        if done >= count:
            break
        time.sleep(0.5)


def measure(probes: dict[str, float], watch: AlertWatch, *, rate: float, sent: int,
            elapsed_s: float, worker_cpu: float | None, broker_cpu: float | None = None,
            recommender_cpu: float | None = None) -> Point:
    first = min(probes.values(), default=0.0)
    return Point(
        rate=rate, achieved=sent / elapsed_s, probes=len(probes), worker_cpu=worker_cpu,
        broker_cpu=broker_cpu, recommender_cpu=recommender_cpu,
        total_ms=[(watch.received_at[p] - at) * 1000 for p, at in probes.items()
                  if p in watch.received_at],
        sent_s=[at - first for p, at in probes.items() if p in watch.received_at],
        emitted_ms=[(watch.emitted_at[p] - at) * 1000 for p, at in probes.items()
                    if p in watch.emitted_at],
        received_ms=[(watch.received_at[p] - watch.emitted_at[p]) * 1000 for p in probes
                     if p in watch.emitted_at and p in watch.received_at])

