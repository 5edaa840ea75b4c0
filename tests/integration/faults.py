"""The fault matrix's shop, its faults' shared parts, and what must hold after each.

Used by ``tests/integration/test_fault_matrix.py``; nothing here is a test.

A :class:`Workload` is a simulated shop's events (some re-sent by the shop, some malformed),
encoded once. :class:`PacedShop` streams it from a thread at :data:`RATE` events/s through
the producer SDK, remembering where every message landed. :func:`assert_recovered` then
checks, with no one's help, what the issue asks after every fault:

* every worker that should run is running and Redis's progress reached the last offsets;
* every profile equals the offline recomputation (``tests/reference_features.py``);
* ``crm.deadletter`` holds exactly the malformed messages, each with its error code;
* no alert is lost: every alert the rules must fire (:func:`alerts_the_rules_must_fire`) is
  on ``crm.alerts``, and so is every alert of the Redis feed;
* every alert id repeated on ``crm.alerts`` is counted by the workers
  (``crm_alerts_repeated_total``).

The workers run with :data:`ALERT_RULES`: the built-in rules except that negative tickets and
abandoned carts have no cooldown and carts do not wait for the purchases watermark, so that
what those two rules fire is a function of the events alone, computable offline. The model
driven rules (churn, CLV, anomalies, segments) run as built in; what they fire depends on
what the models learnt, which a crash changes, so for them the check is that whatever the
rules decided reached the topic (the feed).
"""

from __future__ import annotations

import bisect
import collections
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from feature_store.keys import (
    ALERTS_STREAM_KEY,
    METRICS_KEY,
    alert_state_key,
    cart_timers_key,
)
from load_tests.chaos import inject_duplicates, malformed_events
from schemas.records import alert_id_for
from schemas.topics import ALERTS, CLICKS, DEADLETTER
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config
from tests.helpers import wait_for
from tests.integration.support import assert_profiles_exact, caught_up

#: Events per second the shop streams at while each fault is injected.
RATE = 1_000
#: The rules the matrix's workers run (see the module's docstring).
ALERT_RULES = """
negative_ticket: {cooldown: 0s}
cart_abandonment: {cooldown: 0s, wait_for_purchases: false}
"""
CART_TIMEOUT_MS = 30 * 60_000  # the built-in cart_abandonment timeout


@dataclass(frozen=True)
class Outgoing:
    """One message the shop sends: an event (``event``) or malformed bytes (``malformed``
    names the error code the worker must give it)."""

    topic: str
    key: str
    value: bytes
    event: dict[str, Any] | None = None
    malformed: str | None = None


@dataclass
class Workload:
    outgoing: list[Outgoing]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The valid events as sent, re-sent ones included."""
        return [message.event for message in self.outgoing if message.event is not None]

    @property
    def malformed(self) -> int:
        return sum(message.malformed is not None for message in self.outgoing)


def shop_workload(settings: Settings, *, customers: int, days: float, seed: int,
                  start: datetime, resent: float = 0.03, malformed: int = 60,
                  extra: Sequence[tuple[float, dict[str, Any]]] = ()) -> Workload:
    """A simulated shop's events, ``resent`` of them sent again later by the shop, with
    ``malformed`` bad payloads of every kind among them; ``extra`` events go in at the given
    fractions of the stream."""
    rng = random.Random(seed)
    events = list(ShopSimulator(customers=customers, seed=seed, start=start,
                                days=days).events())
    for fraction, event in sorted(extra, key=lambda item: item[0]):
        events.insert(round(fraction * len(events)), event)
    outgoing = [Outgoing(settings.topic(TOPIC_BY_TYPE[event["type"]]),
                         event.get("customer_id") or f"anon:{event['anonymous_id']}",
                         orjson.dumps(event), event=event)
                for event in inject_duplicates(events, resent, rng)]
    for topic, key, payload, code in malformed_events(rng, malformed):
        outgoing.insert(rng.randrange(len(outgoing) + 1),
                        Outgoing(settings.topic(topic), key, payload, malformed=code))
    return Workload(outgoing)


class PacedShop(threading.Thread):
    """Sends a workload at ``rate`` messages/s through the producer SDK, from a thread;
    records the partition and offset of every message the broker acknowledged."""

    def __init__(self, settings: Settings, workload: Workload, rate: float = RATE) -> None:
        super().__init__(name="paced-shop", daemon=True)
        self.settings, self.workload, self.rate = settings, workload, rate
        self.sent = 0
        self.placed: list[tuple[int, int] | None] = [None] * len(workload.outgoing)
        self.elapsed_s = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.perf_counter()
        try:
            with EventProducer(settings=self.settings) as producer:
                for index, message in enumerate(self.workload.outgoing):
                    if index % 50 == 0:  # pace in steps of 50 ms at 1,000/s
                        ahead = index / self.rate - (time.perf_counter() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                    producer.send_raw(message.topic, message.key, message.value,
                                      on_delivered=self._placed_at(index))
                    self.sent = index + 1
                self.elapsed_s = time.perf_counter() - started
                # Leaving the producer flushes it: every message acknowledged, or an error.
        except BaseException as error:
            self.error = error

    def _placed_at(self, index: int) -> Callable[[str, int, int], None]:
        def placed(topic: str, partition: int, offset: int) -> None:
            self.placed[index] = (partition, offset)
        return placed

    @property
    def streaming(self) -> bool:
        return self.is_alive() and self.sent < len(self.workload.outgoing)

    def finish(self, timeout: float = 600) -> None:
        """Wait until every message is acknowledged by the broker."""
        self.join(timeout)
        assert not self.is_alive(), "the shop did not finish sending"
        if self.error is not None:
            raise self.error
        assert None not in self.placed, "the broker acknowledged every message"

    @property
    def rate_achieved(self) -> float:
        return len(self.workload.outgoing) / self.elapsed_s if self.elapsed_s else 0.0

    def last_offsets(self) -> dict[tuple[str, int], int]:
        last: dict[tuple[str, int], int] = {}
        for message, place in zip(self.workload.outgoing, self.placed, strict=True):
            assert place is not None
            key = (message.topic, place[0])
            last[key] = max(last.get(key, -1), place[1])
        return last

    def malformed_at(self) -> dict[tuple[str, int, int], str]:
        """(topic, partition, offset) of every malformed message -> its error code."""
        return {(message.topic, place[0], place[1]): message.malformed
                for message, place in zip(self.workload.outgoing, self.placed, strict=True)
                if message.malformed is not None and place is not None}

    def clicks_placed(self) -> list[tuple[dict[str, Any], int, int]]:
        """Every click event sent, with the partition and offset it landed on."""
        clicks = self.settings.topic(CLICKS)
        return [(message.event, place[0], place[1])
                for message, place in zip(self.workload.outgoing, self.placed, strict=True)
                if message.topic == clicks and message.event is not None and place is not None]


def processed(client: redis.Redis) -> int:
    """Messages the workers recorded as processed (repeats included)."""
    return sum(int(v) for v in client.hgetall(METRICS_KEY).values())  # type: ignore[union-attr]


def wait_until_processed(client: redis.Redis, shop: PacedShop, fraction: float,
                         workers: Sequence[ManagedProcess]) -> None:
    """Wait until the workers processed ``fraction`` of the workload; the shop must still be
    streaming then, so that the fault strikes mid-stream."""
    total = len(shop.workload.outgoing)
    wait_for(lambda: processed(client) >= fraction * total, timeout=300, interval=0.05,
             alive=workers, what=f"the workers to process {fraction:.0%} of the stream")
    assert shop.streaming, "the shop finished before the fault: it would not strike mid-stream"


def scrape(metrics_port: int, name: str) -> dict[str, float]:
    """A worker's counter ``name`` by its first label's value."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    values: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if line.startswith(name + "{"):
            label = line.split('"')[1]
            values[label] += float(line.rsplit(" ", 1)[1])
    return dict(values)


def read_topic(settings: Settings, name: str, quiet_s: float = 5.0,
               timeout_s: float = 180.0) -> list[dict[str, Any]]:
    """Every record of a topic, read from the beginning until nothing new came for
    ``quiet_s``."""
    consumer = Consumer({**kafka_client_config(settings), "group.id": f"{settings.app_id}-read",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topic(name), p, OFFSET_BEGINNING)
                     for p in range(settings.partitions)])
    records: list[dict[str, Any]] = []
    deadline, last = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    last = time.monotonic()
                    records.append(orjson.loads(message.value() or b"{}"))
    finally:
        consumer.close()
    return records


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


@dataclass(frozen=True)
class MustFire:
    """An alert the rules must fire, and why: what a failed assertion prints, so that one
    CI log is enough to tell where a lost alert went."""

    kind: str
    customer: str
    why: str


def alerts_the_rules_must_fire(events: Iterable[dict[str, Any]],
                               clicks_placed: Iterable[tuple[dict[str, Any], int, int]],
                               lateness_ms: int) -> dict[str, MustFire]:
    """Every alert :data:`ALERT_RULES` must fire for these events, by alert id
    (``clicks_placed``: each click with its partition and offset), whatever the order of
    topics, batches, crashes and redeliveries.

    * ``negative_ticket``: every ticket resolved with a CSAT of 1 or 2 (no cooldown).
    * ``cart_abandonment``: an add-to-cart of a customer who never bought at or after it,
      never declined marketing and was never a stitched visitor, when the clicks
      partition's watermark passes its deadline and no other add-to-cart of theirs came
      before that (a later one replaces the cart), however the batches fall.
    """
    unique = list({event["event_id"]: event for event in events}.values())
    must: dict[str, MustFire] = {}
    for event in unique:
        if event["type"] == "ticket" and (event.get("csat") or 5) <= 2:
            must[alert_id_for(tenant=event.get("tenant", "default"),
                              customer_id=event["customer_id"], kind="negative_ticket",
                              triggered_by=event["event_id"])] = MustFire(
                "negative_ticket", event["customer_id"],
                f"ticket {event['event_id']} resolved with CSAT {event.get('csat')}")
    stitched = {e["customer_id"] for e in unique if e.get("customer_id") and e.get("anonymous_id")}
    declined = {e["customer_id"] for e in unique if e.get("marketing_consent") is False}
    last_purchase: dict[str, int] = {}
    for event in unique:
        if event["type"] == "purchase":
            at = _ms(event["occurred_at"])
            customer = event["customer_id"]
            last_purchase[customer] = max(last_purchase.get(customer, at), at)
    partition_times: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    adds: dict[str, list[tuple[int, str, int, int]]] = collections.defaultdict(list)
    for event, partition, offset in clicks_placed:
        at = _ms(event["occurred_at"])
        partition_times[partition].append((at, offset))
        if event["kind"] == "add_to_cart" and event.get("customer_id"):
            adds[event["customer_id"]].append((at, event["event_id"], partition, offset))
    for placed in partition_times.values():
        placed.sort()
    for customer, added in adds.items():
        if customer in stitched or customer in declined:
            continue
        for at, event_id, partition, offset in set(added):
            if last_purchase.get(customer, -1) >= at:
                continue
            placed = partition_times[partition]
            deadline = at + CART_TIMEOUT_MS + lateness_ms
            passing = bisect.bisect_left(placed, (deadline, -1))
            if passing == len(placed):
                continue  # the watermark never passes the deadline
            passed_at, passed_offset = placed[passing]
            if any(at < other < passed_at for other, *_ in added):
                continue
            must[alert_id_for(tenant="default", customer_id=customer,
                              kind="cart_abandonment", triggered_by=event_id)] = MustFire(
                "cart_abandonment", customer,
                f"{customer} added to cart at {at} ms (clicks partition {partition}, offset "
                f"{offset}); the watermark passes its deadline {deadline} with offset "
                f"{passed_offset} ({passed_at} ms); their adds at {sorted(a for a, *_ in added)}"
                f", last purchase {last_purchase.get(customer)}")
    return must


def why_lost(client: redis.Redis, settings: Settings, lost: dict[str, MustFire],
             feed: set[str]) -> str:
    """What a failed assertion on lost alerts prints: each alert's trigger, whether the
    worker decided it (it is in the Redis feed, so the broker lost it) or never did, and
    what Redis still holds of its customer's alert state and of the open carts."""
    lines = []
    for alert_id, must in list(lost.items())[:5]:
        decided = "in the Redis feed" if alert_id in feed else "not in the Redis feed either"
        state = client.get(alert_state_key("default", must.customer))
        lines.append(f"{alert_id} ({must.kind}, {decided}): {must.why}; alert state {state!r}")
    for partition in range(settings.partitions):
        key = cart_timers_key(settings.topic(CLICKS), partition)
        open_carts: list[Any] = client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
        lines.append(f"{key!r}: {len(open_carts)} open carts, first {open_carts[:3]!r}")
    return "\n".join(lines)


@dataclass
class Recovery:
    """What one scenario found, for its report line and RELIABILITY.md."""

    messages: int
    rate: float
    profiles: int
    dead_letters: int
    dead_letters_repeated: int
    alerts: int
    must_fire: dict[str, int]
    repeated: dict[str, int]
    counted: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self, scenario: str) -> str:
        return (f"{scenario}: {self.messages} messages at {self.rate:,.0f}/s, "
                f"{self.profiles} profiles exact, {self.dead_letters} dead letters "
                f"(+{self.dead_letters_repeated} repeated), {self.alerts} alerts, must fire "
                f"{self.must_fire} all there, repeated ids {self.repeated}, counted "
                f"{self.counted}; {self.extra}")



def assert_recovered(settings: Settings, shop: PacedShop, *, redis_url: str,
                     running: Sequence[ManagedProcess], metrics_ports: Sequence[int],
                     counted_before: Sequence[dict[str, float]] = (),
                     timeout_s: float = 600) -> Recovery:
    """Everything :mod:`this module <tests.integration.faults>` says must hold after a
    fault; ``counted_before`` are repeat counts of workers that are gone (scraped before
    they went)."""
    shop.finish()
    client = redis.Redis.from_url(redis_url)
    wait_for(caught_up(client, shop.last_offsets()), timeout=timeout_s, alive=running,
             what="the workers to process every message after the fault")
    for worker in running:
        assert worker.is_running(), worker.log_tail(40)

    events = shop.workload.events
    profiles_checked = assert_profiles_exact(redis_url, events)

    letters = read_topic(settings, DEADLETTER)
    by_source = {(d["source_topic"], d["source_partition"], d["source_offset"]): d
                 for d in letters}
    malformed = shop.malformed_at()
    assert set(by_source) == set(malformed), "the DLQ must hold exactly the malformed messages"
    for source, code in malformed.items():
        assert by_source[source]["error_code"] == code, by_source[source]

    alerts = read_topic(settings, ALERTS)
    on_topic = collections.Counter(alert["alert_id"] for alert in alerts)
    must = alerts_the_rules_must_fire(events, shop.clicks_placed(),
                                      int(settings.allowed_lateness_s * 1000))
    feed = {orjson.loads(fields[b"alert"])["alert_id"]
            for _, fields in client.xrange(ALERTS_STREAM_KEY)}  # type: ignore[union-attr]
    lost = {alert_id: fire for alert_id, fire in must.items() if alert_id not in on_topic}
    assert not lost, f"{len(lost)} of {len(must)} alerts the rules must fire are missing:\n" \
                     f"{why_lost(client, settings, lost, feed)}"
    assert feed <= set(on_topic), f"{len(feed - set(on_topic))} alerts of the feed not on " \
                                  "crm.alerts"

    kind_of = {alert["alert_id"]: alert["kind"] for alert in alerts}
    repeated: dict[str, int] = collections.Counter()
    for alert_id, count in on_topic.items():
        if count > 1:
            repeated[kind_of[alert_id]] += count - 1
    counted: dict[str, float] = collections.defaultdict(float)
    for port in metrics_ports:
        for kind, value in scrape(port, "crm_alerts_repeated_total").items():
            counted[kind] += value
    for before in counted_before:
        for kind, value in before.items():
            counted[kind] += value
    for kind, count in repeated.items():
        assert count <= counted.get(kind, 0), (
            f"{count} repeated {kind} alerts on crm.alerts, {counted.get(kind, 0):.0f} counted")
    return Recovery(
        messages=len(shop.workload.outgoing), rate=shop.rate_achieved, profiles=profiles_checked,
        dead_letters=len(by_source), dead_letters_repeated=len(letters) - len(by_source),
        alerts=len(on_topic),
        must_fire=dict(collections.Counter(fire.kind for fire in must.values())),
        repeated=dict(repeated),
        counted={kind: value for kind, value in counted.items() if value})


def write_alert_rules(directory: Path) -> Path:
    path = directory / "alerts.yaml"
    path.write_text(ALERT_RULES)
    return path
