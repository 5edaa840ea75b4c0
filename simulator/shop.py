"""A simulated web shop: customers with hidden ground truth, producing events in event time.

:class:`ShopSimulator` yields JSON-ready event dicts, exactly per the event contract, in global
event-time order (a heap of every customer's next action), deterministic by seed.
:func:`run_simulation` sends them through the producer SDK at a target rate (or as fast as
possible), writes the ground truth (and optionally the events) as JSON lines, shows progress
and returns a :class:`SimulationReport`.

The hidden truth (see :mod:`simulator.population`): five latent segments (loyal high
spenders, bargain hunters, window shoppers who rarely buy but fill carts, one-time buyers,
support-heavy customers), ~36% of customers churning at a date within the period (activity
fades over the 30 days before it, then stops: no event at or after ``churn_at``), tastes
shared within 20 taste clusters over a Zipf-popular catalogue (so collaborative filtering beats
popularity), a ticket mood (happy / neutral / angry: wording and CSAT) and an ~80% marketing
consent. Sessions (see :mod:`simulator.sessions`) have page and product views, searches with
query text, cart adds and removals, checkouts and purchases; some start anonymously and stitch
at a ``/login`` page view carrying both ``anonymous_id`` and ``customer_id``. Anonymous events
carry neither ``customer_id`` nor ``marketing_consent``. Tickets go opened -> replied ->
resolved (with CSAT), sometimes reopened. Times are UTC with milliseconds (``...T10:00:00.000Z``).

>>> from datetime import UTC, datetime
>>> sim = ShopSimulator(customers=20, seed=1, start=datetime(2026, 1, 1, tzinfo=UTC), days=30)
>>> events = list(sim.events())
>>> events == list(sim.events())
True
>>> events[0]["event_id"], events[0]["type"], events[0]["tenant"]
('ev-1-0', 'click', 'default')
>>> sorted(sim.ground_truth()[0])[:4]
['anonymous_ids', 'churn_at', 'consent', 'customer_id']
"""

from __future__ import annotations

import functools
import heapq
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from pydantic import ValidationError

from schemas.events import validate_event
from schemas.topics import CLICKS, PURCHASES, TICKETS
from simulator.catalogue import Catalogue
from simulator.population import DAY_MS, Customer, build_population
from simulator.sessions import SessionWriter
from stream.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_DAYS = 180.0
TOPIC_BY_TYPE = {"click": CLICKS, "purchase": PURCHASES, "ticket": TICKETS}


class ShopSimulator:
    """``customers`` simulated customers of one shop over ``days`` days from ``start``.

    The population (segments, tastes, churn dates, moods) is drawn once from ``seed``;
    :meth:`events` replays the same event stream on every call.
    """

    def __init__(
        self,
        *,
        customers: int,
        seed: int,
        start: datetime = DEFAULT_START,
        catalogue_size: int = 2000,
        days: float = DEFAULT_DAYS,
        customer_prefix: str = "c-",
        tenant: str = "default",
    ) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        if start.tzinfo is None:
            raise ValueError("start must carry a UTC offset")
        if days <= 0:
            raise ValueError("days must be positive")
        self.seed = seed
        self.start = start
        self.end = start + timedelta(days=days)
        self.tenant = tenant
        self._start_ms = int(start.timestamp() * 1000)
        self._end_ms = int(self.end.timestamp() * 1000)
        world = random.Random(f"shop-world-{seed}")
        self.catalogue = Catalogue.build(world, size=catalogue_size)
        self.customers: list[Customer] = build_population(
            world,
            self.catalogue,
            customers=customers,
            start_ms=self._start_ms,
            end_ms=self._end_ms,
            prefix=customer_prefix,
            seed=seed,
        )

    def ground_truth(self) -> list[dict[str, Any]]:
        """One JSON-ready record per customer: segment, churn date, tastes, mood, consent."""
        return [customer.truth(self.catalogue) for customer in self.customers]

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event of the simulated period, in event-time order (ties by creation order).

        Each dict is a complete event: ``event_id`` is ``ev-{seed}-{n}`` with ``n`` counting
        from 0 in emission order. Mutating a yielded dict does not affect later events, and
        each call is an independent replay (several may run side by side).
        """
        writer = SessionWriter(
            random.Random(f"shop-behaviour-{self.seed}"),
            self.catalogue,
            seed=self.seed,
            tenant=self.tenant,
            end_ms=self._end_ms,
        )
        heap = writer.heap
        for customer in self.customers:
            writer.schedule_session(customer, customer.first_ms)
        prefix = f"ev-{self.seed}-"
        # RFC 3339 UTC with milliseconds from lookup tables: ~4x cheaper than isoformat().
        clock, millis = _clock_tables()
        day, date = -1, ""
        number = 0
        pop, replace, seq = heapq.heappop, heapq.heapreplace, writer.seq
        while heap:
            item = heap[0][2]
            if type(item) is list:  # a run of timed events, latest last popped first
                at_ms, event = item.pop()
                if not item:
                    pop(heap)
                else:
                    entry = (item[-1][0], next(seq), item)
                    size = len(heap)
                    # Fast path: the run's next event still comes before both children of
                    # the root, so it may stay on top without sifting.
                    if (size < 2 or entry[0] < heap[1][0]) and (
                        size < 3 or entry[0] < heap[2][0]
                    ):
                        heap[0] = entry
                    else:
                        replace(heap, entry)
            else:  # a customer whose next session starts now
                at_ms = pop(heap)[0]
                writer.session(item, at_ms)
                continue
            event["event_id"] = prefix + str(number)
            number += 1
            if at_ms // DAY_MS != day:
                day = at_ms // DAY_MS
                date = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")
            second, ms = divmod(at_ms % DAY_MS, 1000)
            event["occurred_at"] = date + clock[second] + millis[ms]
            yield event


@functools.cache
def _clock_tables() -> tuple[list[str], list[str]]:
    """``HH:MM:SS`` for every second of a day, and ``.mmmZ`` for every millisecond."""
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]
    return clock, [f".{ms:03d}Z" for ms in range(1000)]


# --- running a simulation against Kafka -----------------------------------------------------


class Sender(Protocol):
    """What :func:`run_simulation` needs of a producer (``EventProducer`` or a test double)."""

    def send_raw(self, topic: str, key: str | bytes | None, value: bytes) -> None: ...

    def flush(self, timeout: float = ...) -> Any: ...


@dataclass
class SimulationReport:
    """What one :func:`run_simulation` sent, and how fast."""

    events_sent: int = 0
    per_type: dict[str, int] = field(default_factory=dict)
    per_kind: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    elapsed_s: float = 0.0
    events_per_s: float = 0.0
    first_event_at: str | None = None
    last_event_at: str | None = None
    customers: int = 0
    seed: int = 0
    truth_path: str | None = None
    events_path: str | None = None
    interrupted: bool = False
    started: float = field(default=0.0, repr=False)

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        types = ", ".join(f"{name} {count:,}" for name, count in sorted(self.per_type.items()))
        return (
            f"sent {self.events_sent:,} events ({types}) in {self.elapsed_s:.2f}s: "
            f"{self.events_per_s:,.0f} events/s; {self.invalid} invalid; "
            f"event time {self.first_event_at} .. {self.last_event_at}"
        )


class _Pacer:
    """Token-bucket pacing: at most ``rate`` events/s, with a burst of ~50 ms of events."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * 0.05)
        self.started = time.perf_counter()

    def wait(self, sent: int) -> None:
        allowed = (time.perf_counter() - self.started) * self.rate + self.burst
        if sent >= allowed:
            time.sleep((sent - allowed + 1) / self.rate)


def run_simulation(
    *,
    settings: Settings | None = None,
    customers: int,
    seed: int,
    rate: float | None = None,
    max_events: int | None = None,
    duration_s: float | None = None,
    truth_path: Path | None = None,
    events_path: Path | None = None,
    progress: bool = True,
    start: datetime = DEFAULT_START,
    days: float = DEFAULT_DAYS,
    catalogue_size: int = 2000,
    producer: Sender | None = None,
    flush_timeout_s: float = 60.0,
) -> SimulationReport:
    """Simulate the shop and send its events through :class:`stream.producer.EventProducer`.

    Each event is validated against the contract (``schemas.events.validate_event``), encoded
    once with orjson and handed to the producer's ``send_raw`` keyed like the SDK keys it
    (``customer_id``, or ``anon:{anonymous_id}`` for a visitor). ``rate`` is in events/s
    (``None``: as fast as possible); the run stops after ``max_events``, ``duration_s``, at
    the end of the simulated period or on Ctrl-C, whichever comes first, then flushes (the
    flush is part of the elapsed time). ``producer`` replaces the Kafka producer (tests);
    ``settings`` configures it and the topic names.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for as fast as possible)")
    sim = ShopSimulator(
        customers=customers, seed=seed, start=start, days=days, catalogue_size=catalogue_size
    )
    now = datetime.now(UTC)
    if sim.end - now > timedelta(days=1):
        raise ValueError(
            f"the simulated period ends {sim.end.isoformat()}, more than a day after now; "
            "its later events would be rejected as timestamp_in_future: pick an earlier start "
            "or fewer days"
        )
    if truth_path is not None:
        write_jsonl(truth_path, sim.ground_truth())
    settings = settings or Settings()
    if producer is None:
        from stream.producer import EventProducer

        producer = EventProducer(settings=settings)
    report = SimulationReport(
        customers=customers,
        seed=seed,
        truth_path=str(truth_path) if truth_path else None,
        events_path=str(events_path) if events_path else None,
    )
    events_out = None
    if events_path is not None:
        events_path.parent.mkdir(parents=True, exist_ok=True)
        events_out = events_path.open("wb")
    bar = _progress_bar(max_events) if progress else None
    try:
        _send_all(sim.events(), producer, settings, report, now=now, rate=rate,
                  max_events=max_events, duration_s=duration_s, events_out=events_out, bar=bar)
        producer.flush(flush_timeout_s)
    finally:
        if events_out is not None:
            events_out.close()
        if bar is not None:
            bar.update(report.events_sent - bar.n)
            bar.close()
    report.elapsed_s = time.perf_counter() - report.started
    report.events_per_s = report.events_sent / report.elapsed_s if report.elapsed_s else 0.0
    return report


def _send_all(
    events: Iterator[dict[str, Any]],
    producer: Sender,
    settings: Settings,
    report: SimulationReport,
    *,
    now: datetime,
    rate: float | None,
    max_events: int | None,
    duration_s: float | None,
    events_out: IO[bytes] | None,
    bar: Any,
) -> None:
    """The hot loop: validate, encode, send; pace, stop and show progress every few events."""
    topics = {kind: settings.topic(name) for kind, name in TOPIC_BY_TYPE.items()}
    per_type: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    pacer = _Pacer(rate) if rate else None
    check_every = 256 if rate is None else max(1, min(256, int(rate) // 100))
    report.started = time.perf_counter()
    deadline = report.started + duration_s if duration_s is not None else None
    limit = max_events if max_events is not None else -1
    send_raw = producer.send_raw
    sent = 0
    event: dict[str, Any] | None = None
    try:
        for event in events:
            if sent == limit:
                break
            if sent % check_every == 0 and sent:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if pacer is not None:
                    pacer.wait(sent)
                if bar is not None:
                    bar.update(sent - bar.n)
            try:
                validate_event(event, now=now)
            except ValidationError as error:
                report.invalid += 1
                if report.invalid <= 5:
                    log.error("simulated event %s is invalid: %s", event["event_id"], error)
                continue
            payload = orjson.dumps(event)
            send_raw(topics[event["type"]], event.get("customer_id")
                     or "anon:" + event["anonymous_id"], payload)
            if events_out is not None:
                events_out.write(payload + b"\n")
            per_type[event["type"]] += 1
            per_kind[event.get("kind") or event.get("status") or event["type"]] += 1
            if sent == 0:
                report.first_event_at = event["occurred_at"]
            report.last_event_at = event["occurred_at"]
            sent += 1
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.events_sent = sent
        report.per_type = dict(per_type)
        report.per_kind = dict(per_kind)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``records`` as JSON lines (creating the folder); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for record in records:
            out.write(orjson.dumps(record) + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (ground truth or events)."""
    with path.open("rb") as lines:
        return [orjson.loads(line) for line in lines if line.strip()]


def _progress_bar(total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, mininterval=0.5,
                desc="simulating")
