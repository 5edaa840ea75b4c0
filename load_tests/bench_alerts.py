"""Benchmark: latency from a triggering event to its alert on ``crm.alerts`` under load.

Sends simulated shop traffic with the producer SDK at a fixed rate (open loop: event *i* leaves
at ``start + i / rate``) and, every ``--probe-every`` events, a *probe*: a support ticket
resolved with CSAT 1 by a fresh customer, which the ``negative_ticket`` rule must alert on
(it is not a marketing kind, so consent never holds it back, and a fresh customer has no
cooldown). A consumer of ``crm.alerts`` matches each alert's ``triggered_by`` to the probe's
send time; the report gives p50/p90/p99 of send → alert received, and the probes that never
alerted. Probe event times follow the simulated clock, so watermarks stay coherent.

    python -m load_tests.bench_alerts --rate 2000 --duration 30

Starts (on loopback) an embedded broker, a redis-server and one ``crm worker`` unless
``CRM_KAFKA_BOOTSTRAP`` is set, in which case it uses that cluster, ``CRM_REDIS_URL`` and the
worker already running there. Writes ``load_tests/results/ALERTS.md``. Goal: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_END, Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from tqdm import tqdm

from load_tests.simulator import TOPIC_BY_TYPE, ShopSimulator
from schemas.topics import ALERTS, TICKETS
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config
from stream.topics import create_topics

RESULTS = Path(__file__).resolve().parent / "results" / "ALERTS.md"
GOAL_P99_MS = 100.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


@dataclass
class AlertWatch:
    """Reads ``crm.alerts`` from its end on a thread; remembers when each trigger alerted."""

    settings: Settings
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
                             "enable.auto.commit": False, "fetch.wait.max.ms": 5})
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in sorted(partitions)])
        consumer.poll(0.5)  # resolve the end offsets before any probe is sent
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


def run_load(settings: Settings, *, rate: float, duration_s: float, warmup_s: float,
             probe_every: int, customers: int) -> tuple[dict[str, float], int, float]:
    """Send ``warmup_s`` then ``duration_s`` of traffic; probes only after the warm-up.

    Answers the probes' send times (wall clock), the events sent and the elapsed seconds.
    """
    warmup, total = int(rate * warmup_s), int(rate * (warmup_s + duration_s))
    start_day = datetime.now(UTC) - timedelta(days=120)
    simulator = ShopSimulator(customers=customers, seed=17, start=start_day, days=120)
    run_id = uuid.uuid4().hex[:6]
    # Generated and serialised up front, so the sender's CPU does not compete with the worker.
    messages: list[tuple[str, str, bytes, str | None]] = []
    for index, event in enumerate(tqdm(islice(simulator.events(), total), total=total,
                                       desc="generating", unit="ev", file=sys.stderr)):
        if index >= warmup and index % probe_every == probe_every - 1:
            probe_id = f"probe-{run_id}-{index}"
            probe = probe_event(probe_id, f"probe-{run_id}-c{index}", event["occurred_at"])
            messages.append((settings.topic(TICKETS), str(probe["customer_id"]),
                             orjson.dumps(probe), probe_id))
        else:
            messages.append((settings.topic(TOPIC_BY_TYPE[event["type"]]),
                             event.get("customer_id") or f"anon:{event['anonymous_id']}",
                             orjson.dumps(event), None))
    probes: dict[str, float] = {}
    with EventProducer(settings=settings, extra_config={"linger.ms": 1}) as producer:
        start = time.perf_counter() + 0.05
        for index, (topic, key, payload, probe_id) in enumerate(tqdm(
                messages, desc="sending", unit="ev", file=sys.stderr, mininterval=1.0)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if probe_id is not None:
                probes[probe_id] = time.time()
            producer.send_raw(topic, key, payload)
        elapsed = time.perf_counter() - start
    return probes, total, elapsed


def _row(measure: str, latencies: list[float]) -> str:
    return (f"| {measure} | {len(latencies):,} | {_percentile(latencies, 50):.1f} | "
            f"{_percentile(latencies, 90):.1f} | {_percentile(latencies, 99):.1f} | "
            f"{max(latencies, default=float('nan')):.1f} |")


def report(probes: dict[str, float], watch: AlertWatch, *, rate: float, sent: int,
           elapsed_s: float, remote: bool) -> str:
    latencies = [(watch.received_at[p] - sent_at) * 1000 for p, sent_at in probes.items()
                 if p in watch.received_at]
    to_emitted = [(watch.emitted_at[p] - sent_at) * 1000 for p, sent_at in probes.items()
                  if p in watch.emitted_at]
    to_received = [(watch.received_at[p] - watch.emitted_at[p]) * 1000 for p in probes
                   if p in watch.emitted_at]
    missing = len(probes) - len(latencies)
    p99 = _percentile(latencies, 99)
    where = ("against the configured cluster and worker" if remote else
             "with an embedded broker, a redis-server, one worker and this client on one machine")
    lines = [
        "# Alert latency: triggering event → alert on crm.alerts", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, {where}. {sent:,} events at "
        f"{rate:,.0f}/s offered ({sent / elapsed_s:,.0f}/s achieved over {elapsed_s:.1f} s), "
        f"{len(probes):,} probes (tickets resolved with CSAT 1 by fresh customers).", "",
        "| measure | alerts | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
        _row("probe sent → alert received", latencies),
        _row("… sent → alert emitted by the worker", to_emitted),
        _row("… emitted → received by this consumer", to_received), "",
        f"Probes without an alert: {missing:,}. Alerts seen by kind: "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(watch.kinds.items())) or 'none'}.",
        f"Goal p99 <= {GOAL_P99_MS:.0f} ms: "
        f"**{'met' if latencies and p99 <= GOAL_P99_MS and not missing else 'missed'}**.", "",
        "Reproduce: `python -m load_tests.bench_alerts --rate 2000 --duration 30`.", "",
    ]
    if not latencies:
        lines.insert(-2, "No probe alerted: is the alert engine wired into the worker?")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s offered")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--probe-every", type=int, default=100,
                        help="one probe ticket per this many events")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of traffic before the first probe (not measured)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the partitions (embedded stack only)")
    parser.add_argument("--drain", type=float, default=15.0,
                        help="seconds to wait for the last alerts after the load")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    remote = bool(os.environ.get("CRM_KAFKA_BOOTSTRAP"))
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        work = Path(tmp)
        if remote:
            settings = Settings()
        else:
            from stream.devstack import EmbeddedBroker, RedisServer

            broker = EmbeddedBroker(work_dir=work)
            bootstrap = broker.start()
            stack.callback(broker.stop)
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
                worker = ManagedProcess(
                    name=f"worker-{number}", argv=[sys.executable, "-m", "crm", "worker"],
                    log_path=work / f"worker-{number}.log",
                    env={**env, "CRM_WORKER_NAME": f"bench-{number}"}).start()
                stack.callback(worker.stop)
        watch = AlertWatch(settings).start()
        stack.callback(watch.stop)
        print(f"worker ready after {warm_up(settings, watch):.1f} s", file=sys.stderr)
        if not remote and args.workers > 1:
            wait_for_members(settings, args.workers)
        probes, sent, elapsed = run_load(settings, rate=args.rate, duration_s=args.duration,
                                         warmup_s=args.warmup, probe_every=args.probe_every,
                                         customers=args.customers)
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline and not set(probes) <= set(watch.received_at):
            time.sleep(0.2)
        text = report(probes, watch, rate=args.rate, sent=sent, elapsed_s=elapsed, remote=remote)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
