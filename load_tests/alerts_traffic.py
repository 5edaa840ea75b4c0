"""The alert benchmark's traffic: simulated shop events with probes, sent open loop, and a
watch on ``crm.alerts`` that notes when each probe's alert arrived.

A probe is a support ticket resolved with CSAT 1 by a fresh customer, which the
``negative_ticket`` rule must alert on (it is not a marketing kind, so consent never holds it
back, and a fresh customer has no cooldown). Probe event times follow the simulated clock, so
watermarks stay coherent.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice

import orjson
from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from tqdm import tqdm

from schemas.topics import ALERTS, TICKETS
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config


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

