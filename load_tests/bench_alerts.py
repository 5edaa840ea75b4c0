"""Benchmark: latency from a triggering event to its alert on ``crm.alerts`` under load.

Sends simulated shop traffic with the producer SDK at a fixed rate (open loop: event *i* leaves
at ``start + i / rate``) and, every ``--probe-every`` events, a *probe*: a support ticket
resolved with CSAT 1 by a fresh customer, which the ``negative_ticket`` rule must alert on
(it is not a marketing kind, so consent never holds it back, and a fresh customer has no
cooldown). A consumer of ``crm.alerts`` matches each alert's ``triggered_by`` to the probe's
send time; the report gives p50/p90/p99 of send → alert received, and the probes that never
alerted. Probe event times follow the simulated clock, so watermarks stay coherent.

Before the first rate, ``--prime`` seconds of unmeasured traffic go through the whole pipeline
and are drained, so what is measured is a broker, workers and Redis in service, not a JVM
compiling its hot paths or models meeting their first customers.

    python -m load_tests.bench_alerts --broker apache --workers 2 --rate 2000 --duration 30

Starts (on loopback) an embedded broker, a redis-server and one ``crm worker`` unless
``CRM_KAFKA_BOOTSTRAP`` is set, in which case it uses that cluster, ``CRM_REDIS_URL`` and the
worker already running there. Writes ``load_tests/results/ALERTS.md``. Goal: p99 <= 100 ms.

Everything it starts, and its own sender and consumer, run at real-time round-robin priority
``--realtime-priority`` (``chrt --rr``; 0 for the default scheduler; see
:mod:`load_tests.scheduling`). Why: at 2,000 events/s the stack uses about 1.5 of this
machine's two cores, so any other load on the machine tips it into queueing. Under the default
scheduler the tail came in episodes of seconds to 20 s with no checkpoint or stall of the
stack's own near them: p99 at 2,000 events/s was 276-1,866 ms in five runs, against 52-418 ms
(median 93) in 24 with the stack first, in the same hours. The stack on machines of its
own does not share them with other tenants.

How much slower a host the goal survives is shown on demand: ``--busy-host 0.3`` has a
spinner above the stack's priority take 30% of each core for the measured rates (see
:func:`load_tests.scheduling.busy_host`), as the slow hours of this shared machine do.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import orjson
import redis
from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from feature_store.keys import METRICS_KEY
from load_tests.measure import (
    percentile,
    process_cpu_seconds,
    spawned_children,
    speed_check_line,
    speed_check_ms,
    write_report,
)
from load_tests.scheduling import (
    BUSY_SLICE_MS,
    become_realtime,
    busy_host,
    busy_host_problem,
    permitted_priority,
)
from schemas.topics import ALERTS, TICKETS
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.metrics import BATCH_STEP_NAMES
from stream.processes import ManagedProcess, free_port
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config
from stream.topics import create_topics

RESULTS = Path(__file__).resolve().parent / "results" / "ALERTS.md"
GOAL_P99_MS = 100.0


@dataclass
class AlertWatch:
    """Reads ``crm.alerts`` from its end on a thread; remembers when each trigger alerted."""

    settings: Settings
    #: How long the broker may hold an empty fetch. Apache Kafka answers as soon as an alert
    #: arrives, so a long wait only saves idle polls; the embedded broker holds every fetch
    #: for the whole wait, so there it must be short.
    fetch_wait_ms: int = 100
    received_at: dict[str, float] = field(default_factory=dict)
    emitted_at: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> AlertWatch:
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise SystemExit("could not start reading crm.alerts")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        topic = self.settings.topic(ALERTS)
        consumer = Consumer({**kafka_client_config(self.settings),
                             "group.id": f"bench-alerts-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False,
                             "fetch.wait.max.ms": self.fetch_wait_ms})
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, end_offset(consumer, topic, p))
                         for p in sorted(partitions)])
        self._ready.set()
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.05)
                if message is None or message.error():
                    continue
                now = time.time()
                alert = orjson.loads(message.value() or b"{}")
                if "triggered_by" not in alert:
                    continue
                self.received_at.setdefault(alert["triggered_by"], now)
                self.emitted_at.setdefault(
                    alert["triggered_by"], datetime.fromisoformat(alert["emitted_at"]).timestamp())
                self.kinds[alert["kind"]] = self.kinds.get(alert["kind"], 0) + 1
        finally:
            consumer.close()


def end_offset(consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0) -> int:
    """The partition's end offset, read now, before any probe is sent. (Assigning OFFSET_END
    resolves it at some later fetch: after the first alerts, when a busy broker answers
    slowly, and those alerts are never seen.) A topic created moments ago may have no
    leader yet: asked again until it has."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                      timeout=timeout_s)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def probe_event(probe_id: str, customer_id: str, occurred_at: str) -> dict[str, object]:
    return {"event_id": probe_id, "customer_id": customer_id, "type": "ticket",
            "ticket_id": f"pt-{probe_id}", "status": "resolved", "csat": 1,
            "subject": "Damaged parcel", "body": "Arrived broken.", "occurred_at": occurred_at}


def warm_up(settings: Settings, watch: AlertWatch, timeout_s: float = 180.0) -> float:
    """Wait until a first probe alerts: the worker has joined, loaded and is consuming."""
    probe_id = f"warm-up-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with EventProducer(settings=settings) as producer:
        producer.send(probe_event(probe_id, probe_id, datetime.now(UTC).isoformat()))
    while probe_id not in watch.received_at:
        if time.monotonic() - started > timeout_s:
            raise SystemExit("no alert for the warm-up probe: is the worker running and wired?")
        time.sleep(0.1)
    return time.monotonic() - started


def wait_for_members(settings: Settings, workers: int, timeout_s: float = 120.0) -> None:
    """Wait until every worker is a member of the stable consumer group, so no rebalance
    falls inside the measurement.

    The embedded broker describes groups without their members; there the wait is a session
    timeout and a half (its join takes about half of one), and the warm-up traffic follows.
    """
    admin = AdminClient(kafka_client_config(settings))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        future = admin.describe_consumer_groups([settings.app_id])[settings.app_id]
        try:
            group = future.result(timeout=10)
        except KafkaException:
            group = None
        if group is not None and group.state == ConsumerGroupState.STABLE:
            if len(group.members) == workers:
                return
            if not group.members:  # a broker that does not report members
                time.sleep(1.5 * settings.session_timeout_s)
                return
        time.sleep(0.5)
    raise SystemExit(f"the consumer group did not reach {workers} stable members")


Message = tuple[str, str, bytes, str | None]  # topic, key, payload, probe id or None


def shop_messages(settings: Settings, *, count: int, customers: int, seed: int,
                  probe_every: int = 0, probes_after: int = 0) -> list[Message]:
    """``count`` simulated shop events, encoded; with ``probe_every``, every such event from
    ``probes_after`` on is replaced by a probe. Generated and serialised up front, so the
    sender's CPU does not compete with the worker."""
    start_day = datetime.now(UTC) - timedelta(days=120)
    simulator = ShopSimulator(customers=customers, seed=seed, start=start_day, days=120)
    run_id = uuid.uuid4().hex[:6]
    messages: list[Message] = []
    for index, event in enumerate(tqdm(islice(simulator.events(), count), total=count,
                                       desc="generating", unit="ev", file=sys.stderr)):
        if probe_every and index >= probes_after and index % probe_every == probe_every - 1:
            probe_id = f"probe-{run_id}-{index}"
            probe = probe_event(probe_id, f"probe-{run_id}-c{index}", event["occurred_at"])
            messages.append((settings.topic(TICKETS), str(probe["customer_id"]),
                             orjson.dumps(probe), probe_id))
        else:
            messages.append((settings.topic(TOPIC_BY_TYPE[event["type"]]),
                             event.get("customer_id") or f"anon:{event['anonymous_id']}",
                             orjson.dumps(event), None))
    return messages


#: The sender wakes at most this often and then sends every message due: a sleep per
#: message would cost the machine 2,000 wake-ups a second at 2,000 events/s.
SEND_TICK_S = 0.002


def send_paced(settings: Settings, messages: list[Message], rate: float, desc: str,
               linger_ms: float) -> tuple[dict[str, float], float]:
    """Send open loop (message *i* leaves at ``start + i / rate``, or up to a tick later);
    answers the probes' send times (wall clock, taken as each probe leaves) and the elapsed
    seconds."""
    probes: dict[str, float] = {}
    with EventProducer(settings=settings, extra_config={"linger.ms": linger_ms}) as producer:
        start = time.perf_counter() + 0.05
        for index, (topic, key, payload, probe_id) in enumerate(tqdm(
                messages, desc=desc, unit="ev", file=sys.stderr, mininterval=1.0)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(max(delay, SEND_TICK_S))
            if probe_id is not None:
                probes[probe_id] = time.time()
            producer.send_raw(topic, key, payload)
        elapsed = time.perf_counter() - start
    return probes, elapsed


def run_load(settings: Settings, *, rate: float, duration_s: float, warmup_s: float,
             probe_every: int, customers: int, linger_ms: float, seed: int = 17
             ) -> tuple[dict[str, float], int, float]:
    """Send ``warmup_s`` then ``duration_s`` of traffic; probes only after the warm-up.

    Answers the probes' send times (wall clock), the events sent and the elapsed seconds.
    """
    warmup, total = int(rate * warmup_s), int(rate * (warmup_s + duration_s))
    messages = shop_messages(settings, count=total, customers=customers, seed=seed,
                             probe_every=probe_every, probes_after=warmup)
    probes, elapsed = send_paced(settings, messages, rate, "sending", linger_ms)
    return probes, total, elapsed


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
    """The batch steps' totals in one worker's Prometheus metrics text."""
    steps = {step: StepTimes() for step in BATCH_STEP_NAMES}
    fast: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "crm_worker_batch_step_seconds":
            continue
        for sample in family.samples:
            step = sample.labels.get("step", "")
            if step not in steps:
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


def scrape_step_times(ports: list[int]) -> dict[str, StepTimes]:
    """The batch steps' totals so far, summed over the workers serving metrics on ``ports``."""
    total = {step: StepTimes() for step in BATCH_STEP_NAMES}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            for step, times in step_times_from(reply.read().decode()).items():
                total[step] += times
    return total


def steps_table(point: Point) -> list[str]:
    """Where the workers' batches spent their time at one rate (from their metrics)."""
    if not point.steps:
        return []
    rows = [f"| {step} | {times.seconds / times.batches * 1000:,.2f} | "
            f"{times.slow / times.batches:.1%} |"
            for step, times in point.steps.items() if times.batches]
    return [f"Where the workers' batches spent their time at {point.rate:,.0f} events/s "
            "(`crm_worker_batch_step_seconds`, both workers): a step that waits on Redis, "
            "Kafka or a core shows it here.", "",
            f"| step | mean ms per batch | batches over {SLOW_STEP_S * 1000:.0f} ms "
            "in the step |", "|---|---:|---:|", *rows, ""]


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


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):,.1f}" if values else "n/a"


def _share(cpu: float | None) -> str:
    return "n/a" if cpu is None else f"{cpu:.0%}"


def scheduling_sentence(priority: int, remote: bool) -> str:
    """How this run shared the machine's cores."""
    if not priority:
        return "Default scheduling for every process."
    if remote:
        return (f"This benchmark's sender and alert consumer ran at real-time round-robin "
                f"priority {priority} (`chrt --rr {priority}`); the stack kept its own.")
    return (f"The stack (broker, redis-server, workers) and this benchmark's sender and alert "
            f"consumer ran at real-time round-robin priority {priority} (`chrt --rr "
            f"{priority}`); the workers' recommender processes and checkpoint children drop "
            "to the default policy at nice 10, as they do under any real-time worker. So the "
            "other tenants of this shared two-core machine wait for the stack, as they would "
            "on machines of its own, instead of the stack waiting for them.")


def busy_host_sentence(share: float, priority: int) -> str:
    """What the emulated busy host took, if anything."""
    if not share:
        return ""
    return (f" A busier host was emulated for the measured rates: on each core a spinner at "
            f"real-time priority {priority}, above the stack's, took {share:.0%} of the core "
            f"in {BUSY_SLICE_MS} ms slices (`stress-ng --cpu-load`), so the stack had about "
            f"{1 - share:.0%} of the CPU it has in a quiet hour.")


def report(points: list[Point], watch: AlertWatch, *, workers: int, remote: bool,
           broker: str, probe_every: int, plot: Path | None, timeline: Path | None = None,
           speed_ms: tuple[float, float] | None = None,
           prime: tuple[float, float] | None = None, priority: int = 0,
           busy: tuple[float, int] = (0.0, 0), reproduce: str = "") -> str:
    kafka = "Apache Kafka (one KRaft node)" if broker == "apache" else "the embedded broker"
    where = ("against the configured cluster and worker(s)" if remote else
             f"with {kafka}, a redis-server, {workers} worker process"
             f"{'es' if workers > 1 else ''} and this client on one machine")
    rows = [
        f"| {p.rate:,.0f} | {p.achieved:,.0f} | {len(p.total_ms):,}/{p.probes:,} | "
        f"{_ms(p.total_ms, 50)} | {_ms(p.total_ms, 90)} | {_ms(p.total_ms, 99)} | "
        f"{_ms(p.total_ms, 100)} | {_ms(p.emitted_ms, 99)} | {_ms(p.received_ms, 99)} | "
        f"{_share(p.worker_cpu)} | {_share(p.recommender_cpu)} | {_share(p.broker_cpu)} | "
        f"{'met' if p.met else 'missed'} |"
        for p in points
    ]
    lines = [
        "# Alert latency: triggering event → alert on crm.alerts", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, {where}. Per offered rate: a warm-up, then "
        "open-loop simulated shop traffic with one probe (a ticket resolved with CSAT 1 by a "
        f"fresh customer, which must raise `negative_ticket`) per {probe_every} "
        "events; latency is from the probe's send to its alert arriving here, split at the "
        "alert's `emitted_at` (worker clock = this clock)." + (
            "" if prime is None else
            f" Before the first rate, {prime[0]:g} s of unmeasured traffic at {prime[1]:,.0f} "
            "events/s went through the whole pipeline and were drained: a freshly started JVM "
            "broker compiles its hot paths during its first minute of traffic (Apache Kafka's "
            "compiler threads took 0.4-0.8 of a core here), which a broker in service has "
            "long done.") + " " + scheduling_sentence(priority, remote)
        + busy_host_sentence(*busy), "",
        "| offered ev/s | sent ev/s | probes alerted | p50 ms | p90 ms | p99 ms | max ms | "
        "p99 sent→emitted | p99 emitted→received | worker CPU (of one core) | "
        f"recommender CPU | broker CPU | p99 ≤ {GOAL_P99_MS:.0f} ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows, "",
        "Alerts seen by kind (all rates): "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(watch.kinds.items())) or 'none'}.", "",
    ]
    for point in points:
        lines += steps_table(point)
    if speed_ms is not None:
        lines += [speed_check_line(*speed_ms), ""]
    if plot is not None:
        lines += [f"![latency against offered rate]({plot.name})", ""]
    if timeline is not None:
        lines += ["Every probe of each rate, by when it was sent: a tail made of episodes (a "
                  "stall, a checkpoint, a busy neighbour) looks different from a slow pipeline.",
                  "", f"![latency of each probe over time]({timeline.name})", ""]
    lines += [f"Reproduce: `{reproduce or 'python -m load_tests.bench_alerts'}`.", ""]
    return "\n".join(lines)


def plot_points(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    rates = [p.rate for p in points]
    for q, style in ((50, "o-"), (99, "s-")):
        axes.plot(rates, [percentile(p.total_ms, q) for p in points], style, label=f"p{q}")
    axes.axhline(GOAL_P99_MS, color="grey", linestyle="--", label="goal p99")
    axes.set_yscale("log")
    axes.set_xlabel("offered events/s")
    axes.set_ylabel("probe sent → alert received (ms)")
    axes.set_title("Alert latency against load")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_timeline(points: list[Point], path: Path) -> None:
    """Each probe's latency against when it was sent, one panel per rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, panels = plt.subplots(len(points), 1, figsize=(7, 1.6 * len(points) + 0.6),
                                  sharex=True, squeeze=False)
    for point, axes in zip(points, panels[:, 0], strict=True):
        axes.scatter(point.sent_s, point.total_ms, s=4)
        axes.axhline(GOAL_P99_MS, color="grey", linestyle="--", linewidth=0.8)
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.set_ylabel(f"{point.rate:,.0f}/s\nms", fontsize=8)
    panels[-1, 0].set_xlabel("seconds into the measurement (probe sent)")
    panels[0, 0].set_title("Latency of each probe over time (dashed: the p99 goal)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of local processes (Linux /proc); None for none or elsewhere."""
    if not pids:
        return None
    try:
        return sum(process_cpu_seconds(pid) for pid in pids)
    except (OSError, ValueError, IndexError):
        return None


def _per_second(before: float | None, after: float | None, wall_s: float) -> float | None:
    """CPU seconds per second of wall time (a share of one core) between two readings."""
    return None if before is None or after is None else (after - before) / wall_s


def wait_until_processed(settings: Settings, count: int, timeout_s: float) -> None:
    """Wait until the workers have handled ``count`` input messages (so the next rate starts
    without a backlog); gives up quietly after ``timeout_s``."""
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sum(int(v) for v in client.hgetall(METRICS_KEY).values())  # type: ignore[union-attr]
        if done >= count:
            break
        time.sleep(0.5)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[2000.0],
                        help="events/s offered; several values make a sweep")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of load per rate")
    parser.add_argument("--probe-every", type=int, default=100,
                        help="one probe ticket per this many events")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of traffic before the first probe (not measured)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the partitions (embedded stack only)")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="longest wait for the last alerts and the backlog after a rate")
    parser.add_argument("--broker", choices=["embedded", "apache"], default="embedded",
                        help="which Kafka to start on this machine (unless CRM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--linger-ms", type=float, default=5.0,
                        help="the sending producer's linger.ms (5 is the SDK's default)")
    parser.add_argument("--prime", type=float, default=60.0,
                        help="seconds of unmeasured traffic at the first rate through the "
                             "whole pipeline before any measurement, drained before the first "
                             "rate (a JVM broker compiles its hot paths in its first minute)")
    parser.add_argument("--realtime-priority", type=int, default=10, metavar="N",
                        help="real-time round-robin priority for everything this benchmark "
                             "starts and its own sender and consumer (chrt --rr; needs root or "
                             "CAP_SYS_NICE); 0: the default scheduler")
    parser.add_argument("--busy-host", type=float, default=0.0, metavar="SHARE",
                        help="emulate a busier host for the measured rates: on each core a "
                             "spinner above the stack's priority takes this share of the core "
                             "(e.g. 0.3; needs stress-ng and real-time permission)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    priority = permitted_priority(args.realtime_priority)
    spinner_priority = priority + 10
    if args.busy_host and (problem := busy_host_problem(args.busy_host, spinner_priority)):
        parser.error(f"--busy-host: {problem}")
    # Before anything starts: the broker, redis-server, workers and this process's threads
    # (the sender's and the consumer's librdkafka threads among them) inherit it.
    become_realtime(priority)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers started below stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    remote = bool(os.environ.get("CRM_KAFKA_BOOTSTRAP"))
    points: list[Point] = []
    # The processes stop (the stack closes) before their folder goes; a file one of them
    # still held open must not cost the run its report.
    with tempfile.TemporaryDirectory(prefix="bench-alerts-", ignore_cleanup_errors=True) as tmp, \
            ExitStack() as stack:
        work = Path(tmp)
        pids: list[int] = []
        broker_pids: list[int] = []
        metrics_ports: list[int] = []
        if remote:
            settings = Settings()
        else:
            from stream.devstack import EmbeddedBroker, RedisServer

            if args.broker == "apache":
                from stream.apache_kafka import ApacheKafka

                kafka = ApacheKafka(data_dir=work / "apache-kafka")
                bootstrap = kafka.start()
                stack.callback(kafka.stop)
                broker_pids += [kafka.pid] if kafka.pid is not None else []
            else:
                broker = EmbeddedBroker(work_dir=work)
                bootstrap = broker.start()
                stack.callback(broker.stop)
                broker_pids.append(broker.process.pid)
            server = RedisServer(work_dir=work, persist=False)
            redis_url = server.start()
            stack.callback(server.stop)
            run_id = uuid.uuid4().hex[:6]
            settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url,
                                topic_prefix=f"bench{run_id}.", app_id=f"bench-{run_id}")
            create_topics(settings)
            env = settings.model_copy(update={"checkpoint_dir": work / "checkpoints",
                                               "log_level": "WARNING"}).to_env()
            for number in range(args.workers):
                metrics_ports.append(free_port())
                worker = ManagedProcess(
                    name=f"worker-{number}", argv=[sys.executable, "-m", "crm", "worker"],
                    log_path=work / f"worker-{number}.log",
                    env={**env, "CRM_WORKER_NAME": f"bench-{number}",
                         "CRM_WORKER_METRICS_PORT": str(metrics_ports[-1])}).start()
                stack.callback(worker.stop)
                if worker.pid is not None:
                    pids.append(worker.pid)
        embedded = not remote and args.broker == "embedded"
        watch = AlertWatch(settings, fetch_wait_ms=5 if embedded else 100).start()
        stack.callback(watch.stop)
        print(f"worker ready after {warm_up(settings, watch):.1f} s", file=sys.stderr)
        if not remote and args.workers > 1:
            wait_for_members(settings, args.workers)
        sent_so_far = 1  # the warm-up probe
        if args.prime > 0:
            print(f"priming: {args.prime:g} s at {args.rate[0]:,.0f} events/s, unmeasured",
                  file=sys.stderr)
            _, sent, _ = run_load(settings, rate=args.rate[0], duration_s=args.prime,
                                  warmup_s=0, probe_every=0, customers=args.customers,
                                  seed=16, linger_ms=args.linger_ms)
            sent_so_far += sent
            if not remote:
                wait_until_processed(settings, sent_so_far, args.drain)
        stack.enter_context(busy_host(args.busy_host, spinner_priority))
        speed_before = speed_check_ms()
        for index, rate in enumerate(args.rate):
            print(f"rate {rate:,.0f} events/s ({index + 1}/{len(args.rate)})", file=sys.stderr)
            recommender_pids = spawned_children(pids)
            cpu_before, wall_before = _cpu_seconds(pids), time.monotonic()
            broker_before = _cpu_seconds(broker_pids)
            recommender_before = _cpu_seconds(recommender_pids)
            steps_before = scrape_step_times(metrics_ports)
            probes, sent, elapsed = run_load(
                settings, rate=rate, duration_s=args.duration, warmup_s=args.warmup,
                probe_every=args.probe_every, customers=args.customers,
                linger_ms=args.linger_ms, seed=17 + index)
            cpu_after, wall_after = _cpu_seconds(pids), time.monotonic()
            broker_after = _cpu_seconds(broker_pids)
            recommender_after = _cpu_seconds(recommender_pids)
            steps_after = scrape_step_times(metrics_ports)
            sent_so_far += sent
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline and not set(probes) <= set(watch.received_at):
                time.sleep(0.2)
            if not remote:
                wait_until_processed(settings, sent_so_far, max(0.0, deadline - time.monotonic()))
            wall = wall_after - wall_before
            points.append(measure(probes, watch, rate=rate, sent=sent, elapsed_s=elapsed,
                                  worker_cpu=_per_second(cpu_before, cpu_after, wall),
                                  broker_cpu=_per_second(broker_before, broker_after, wall),
                                  recommender_cpu=_per_second(recommender_before,
                                                              recommender_after, wall)))
            if metrics_ports:
                points[-1].steps = {step: steps_after[step] - steps_before[step]
                                    for step in BATCH_STEP_NAMES}
        plot = args.output.with_suffix(".png") if len(points) > 1 else None
        timeline = args.output.with_name(f"{args.output.stem}-timeline.png") if points else None
        text = report(points, watch, workers=args.workers, remote=remote,
                      broker=args.broker, probe_every=args.probe_every, plot=plot,
                      timeline=timeline,
                      speed_ms=(speed_before, speed_check_ms()),
                      prime=(args.prime, args.rate[0]) if args.prime > 0 else None,
                      priority=priority, busy=(args.busy_host, spinner_priority),
                      reproduce=shlex.join(["python", "-m", "load_tests.bench_alerts",
                                            *sys.argv[1:]]))
    write_report(args.output, text)
    if plot is not None:
        plot_points(points, plot)
    if timeline is not None:
        plot_timeline(points, timeline)


if __name__ == "__main__":
    main()
