"""Sending the simulated shop through the producer SDK at a target rate.

:func:`run_simulation` validates each event of a :class:`~simulator.shop.ShopSimulator`
against the contract, sends it with the producer SDK at a target rate (or as fast as
possible), writes the ground truth (and optionally the events) as JSON lines, shows progress
and returns a :class:`SimulationReport`.
"""

from __future__ import annotations

import logging
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
from simulator.shop import DEFAULT_DAYS, DEFAULT_START, TOPIC_BY_TYPE, ShopSimulator
from stream.settings import Settings

log = logging.getLogger(__name__)



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
    history_days: float = 0.0,
) -> SimulationReport:
    """Simulate the shop and send its events through :class:`stream.producer.EventProducer`.

    Each event is validated against the contract (``schemas.events.validate_event``), encoded
    once with orjson and handed to the producer's ``send_raw`` keyed like the SDK keys it
    (``customer_id``, or ``anon:{anonymous_id}`` for a visitor). ``rate`` is in events/s
    (``None``: as fast as possible); the run stops after ``max_events``, ``duration_s``, at
    the end of the simulated period or on Ctrl-C, whichever comes first, then flushes (the
    flush is part of the elapsed time). ``producer`` replaces the Kafka producer (tests);
    ``settings`` configures it and the topic names.

    ``history_days`` places the simulated period so that it ends now (``start`` is then
    ignored) and sends its first ``history_days`` as fast as possible, the rest at ``rate``:
    a demo whose models have learnt a shop's history before live traffic starts.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for as fast as possible)")
    if history_days < 0 or history_days > days:
        raise ValueError("history_days must be between 0 and days")
    if history_days:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=days)
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
        live_from = (start + timedelta(days=history_days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        _send_all(sim.events(), producer, settings, report, now=now, rate=rate,
                  max_events=max_events, duration_s=duration_s, events_out=events_out, bar=bar,
                  paced_from=live_from)
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
    paced_from: str = "",
) -> None:
    """The hot loop: validate, encode, send; pace (events from ``paced_from`` on, an
    RFC 3339 time in the simulator's format), stop and show progress every few events."""
    topics = {kind: settings.topic(name) for kind, name in TOPIC_BY_TYPE.items()}
    per_type: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    pacer: _Pacer | None = None
    paced_sent = 0
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
            if rate and pacer is None and event["occurred_at"] >= paced_from:
                pacer, paced_sent = _Pacer(rate), sent
            if sent % check_every == 0 and sent:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if pacer is not None:
                    pacer.wait(sent - paced_sent)
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
