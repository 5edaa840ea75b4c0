"""The simulated web shop: valid, deterministic, event-time ordered, and its hidden truth shows."""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.events import decode_event, validate_event
from simulator import ShopSimulator, read_jsonl, run_simulation
from stream.settings import Settings

START = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> ShopSimulator:
    return ShopSimulator(customers=300, seed=11, start=START, days=120, catalogue_size=600)


@pytest.fixture(scope="module")
def events(sim: ShopSimulator) -> list[dict[str, Any]]:
    return list(sim.events())


@pytest.fixture(scope="module")
def truth(sim: ShopSimulator) -> dict[str, dict[str, Any]]:
    return {record["customer_id"]: record for record in sim.ground_truth()}


def _owner(event: dict[str, Any], by_device: dict[str, str]) -> str:
    return event.get("customer_id") or by_device[event["anonymous_id"]]


def test_same_seed_same_shop(sim: ShopSimulator, events: list[dict[str, Any]]) -> None:
    """Verify that a seed replays exactly the same events and ground truth, and another differs."""
    again = ShopSimulator(customers=300, seed=11, start=START, days=120, catalogue_size=600)
    assert again.ground_truth() == sim.ground_truth()
    assert list(again.events()) == events
    assert list(sim.events()) == events  # a second run of the same simulator, too
    side_by_side = zip(sim.events(), sim.events(), strict=True)
    assert all(a == b for a, b in islice(side_by_side, 5000))
    other = ShopSimulator(customers=300, seed=12, start=START, days=120, catalogue_size=600)
    assert [e["type"] for e in islice(other.events(), 200)] != [e["type"] for e in events[:200]]


def test_every_event_is_valid(events: list[dict[str, Any]]) -> None:
    """Verify that every event validates under the contract, also after a JSON round trip."""
    assert len(events) > 10_000
    for event in events:
        validate_event(event, now=NOW)
    for event in events[::97]:
        typed = decode_event(orjson.dumps(event), now=NOW)
        assert typed.event_id == event["event_id"]
    assert {event["type"] for event in events} == {"click", "purchase", "ticket"}
    kinds = {event["kind"] for event in events if event["type"] == "click"}
    assert kinds == {"page_view", "product_view", "add_to_cart", "remove_from_cart", "search",
                     "checkout_start"}


def test_event_time_never_goes_back(events: list[dict[str, Any]]) -> None:
    """Verify that events come in non-decreasing event time, with sequential unique ids."""
    times = [event["occurred_at"] for event in events]
    assert times == sorted(times)
    assert all(t.endswith("Z") and len(t) == len("2026-01-01T00:00:00.000Z") for t in times)
    assert [event["event_id"] for event in events] == [f"ev-11-{n}" for n in range(len(events))]
    assert times[0] >= "2026-01-01" and times[-1] < "2026-05-01T00:00:00"


def test_churners_stop_at_their_churn_date(
    events: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> None:
    """Verify that no event of a churner (anonymous ones included) happens after churn_at."""
    by_device = {device: c for c, record in truth.items() for device in record["anonymous_ids"]}
    last: dict[str, str] = {}
    for event in events:
        last[_owner(event, by_device)] = event["occurred_at"]
    churners = [record for record in truth.values() if record["churn_at"]]
    assert churners
    for record in churners:
        if record["customer_id"] in last:
            assert last[record["customer_id"]] < record["churn_at"]
    # Churners have no activity in the last weeks, while most loyal customers do.
    stayers = [c for c, record in truth.items() if record["churn_at"] is None and c in last]
    assert sum(last[c] >= "2026-04-01" for c in stayers) > 0.6 * len(stayers)


def test_churn_and_consent_rates() -> None:
    """Verify that ~30-40% of customers churn within the period and ~80% consent to marketing."""
    records = ShopSimulator(customers=3000, seed=5, start=START, catalogue_size=400).ground_truth()
    churned = sum(record["churn_at"] is not None for record in records) / len(records)
    consent = sum(record["consent"] for record in records) / len(records)
    assert 0.30 <= churned <= 0.42
    assert 0.76 <= consent <= 0.84
    assert len({record["segment_name"] for record in records}) == 5
    assert {record["mood"] for record in records} == {"happy", "neutral", "angry"}


def test_segments_behave_differently(
    events: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> None:
    """Verify that the latent segments differ in spend, orders, cart abandonment and tickets."""
    spend: Counter[str] = Counter()
    orders: Counter[str] = Counter()
    carts: Counter[str] = Counter()
    tickets: Counter[str] = Counter()
    for event in events:
        customer = event.get("customer_id")
        if customer is None:
            continue
        if event["type"] == "purchase":
            spend[customer] += event["total"]
            orders[customer] += 1
        elif event["type"] == "ticket" and event["status"] == "opened":
            tickets[customer] += 1
        elif event.get("kind") == "add_to_cart":
            carts[customer] += 1
    members: dict[str, list[str]] = defaultdict(list)
    for customer, record in truth.items():
        members[record["segment_name"]].append(customer)

    def mean(counter: Counter[str], segment: str) -> float:
        return statistics.fmean(counter[c] for c in members[segment])

    assert mean(spend, "loyal_high_spender") > 3 * mean(spend, "bargain_hunter")
    assert mean(spend, "bargain_hunter") > 2 * mean(spend, "window_shopper")
    assert mean(orders, "one_time_buyer") < 2.0
    assert mean(tickets, "support_heavy") > 2 * max(
        mean(tickets, s) for s in members if s != "support_heavy"
    )
    abandonment = {s: mean(carts, s) / max(mean(orders, s), 0.01) for s in members}
    assert abandonment["window_shopper"] > 3 * abandonment["loyal_high_spender"]


def test_anonymous_sessions_are_stitched_at_login(
    events: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> None:
    """Verify that anonymous sessions exist and a login event carries both ids, correctly."""
    anonymous = [e for e in events if "customer_id" not in e]
    logins = [e for e in events if "customer_id" in e and "anonymous_id" in e]
    assert anonymous and logins
    assert all("marketing_consent" not in e for e in anonymous)
    for login in logins:
        assert login["anonymous_id"] in truth[login["customer_id"]]["anonymous_ids"]
        assert login["url"] == "/login"
    # Anonymous events of a session precede its login; purchases are always identified.
    login_at = {e["session_id"]: e["occurred_at"] for e in logins}
    for event in anonymous:
        if event["session_id"] in login_at:
            assert event["occurred_at"] <= login_at[event["session_id"]]
    assert all("customer_id" in e for e in events if e["type"] != "click")


def test_purchases_and_consent_follow_the_contract(
    events: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> None:
    """Verify that totals equal the items' sum in EUR and events carry the customer's consent."""
    purchases = [e for e in events if e["type"] == "purchase"]
    assert purchases
    for purchase in purchases:
        items = purchase["items"]
        assert purchase["currency"] == "EUR" and purchase["session_id"]
        assert purchase["total"] == round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
        assert all(i["quantity"] >= 1 and i["unit_price"] > 0 and i["category"] for i in items)
    for event in events:
        if "customer_id" in event:
            assert event["marketing_consent"] == truth[event["customer_id"]]["consent"]
        assert event["tenant"] == "default"


def test_tickets_rate_only_on_resolve(
    events: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> None:
    """Verify that CSAT comes only with resolved tickets, and angry customers rate lower."""
    tickets = [e for e in events if e["type"] == "ticket"]
    assert {e["status"] for e in tickets} >= {"opened", "replied", "resolved"}
    csat: dict[str, list[int]] = defaultdict(list)
    for ticket in tickets:
        if ticket["status"] == "resolved":
            assert 1 <= ticket["csat"] <= 5
            csat[truth[ticket["customer_id"]]["mood"]].append(ticket["csat"])
        else:
            assert "csat" not in ticket
    assert statistics.fmean(csat["angry"]) < 2.5 < statistics.fmean(csat["happy"])
    angry_bodies = [t["body"] for t in tickets if t["status"] == "opened"
                    and truth[t["customer_id"]]["mood"] == "angry"]
    assert angry_bodies
    assert all(any(word in body.lower() for word in ("terrible", "refund", "worst", "angry",
                                                    "unbelievable", "disappointed"))
               for body in angry_bodies)


def test_tastes_are_shared_within_clusters(
    events: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> None:
    """Verify that customers of one taste cluster share favourites and buy them."""
    records = list(truth.values())
    rng = random.Random(0)
    same, other = [], []
    for _ in range(2000):
        a, b = rng.sample(records, 2)
        overlap = len(set(a["favourite_products"]) & set(b["favourite_products"]))
        (same if a["taste_cluster"] == b["taste_cluster"] else other).append(overlap)
    assert statistics.fmean(same) > 3 * statistics.fmean(other) + 1
    bought = [(e["customer_id"], item["product_id"]) for e in events if e["type"] == "purchase"
              for item in e["items"]]
    favourite = sum(p in truth[c]["favourite_products"] for c, p in bought) / len(bought)
    assert favourite > 0.3


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | bytes | None, bytes]] = []
        self.flushed = 0

    def send_raw(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushed += 1


def test_run_simulation_sends_validated_events(tmp_path: Path) -> None:
    """Verify that a run sends every event to its topic and key, and writes truth and events."""
    producer = FakeProducer()
    report = run_simulation(
        settings=Settings(topic_prefix="t."), customers=50, seed=3, max_events=4000,
        truth_path=tmp_path / "truth.jsonl", events_path=tmp_path / "events.jsonl",
        progress=False, producer=producer,
    )
    assert report.events_sent == len(producer.sent) == 4000 and report.invalid == 0
    assert producer.flushed == 1
    assert sum(report.per_type.values()) == 4000 and report.events_per_s > 0
    written = read_jsonl(tmp_path / "events.jsonl")
    expected = list(ShopSimulator(customers=50, seed=3).events())[:4000]
    assert written == expected
    topics = {"click": "t.shop.clicks", "purchase": "t.shop.purchases",
              "ticket": "t.support.tickets"}
    for (topic, key, value), event in zip(producer.sent, expected, strict=True):
        assert orjson.loads(value) == event
        assert topic == topics[event["type"]]
        assert key == event.get("customer_id", f"anon:{event.get('anonymous_id')}")
    truth = read_jsonl(tmp_path / "truth.jsonl")
    assert len(truth) == 50 and truth[0]["customer_id"] == "c-000000"
    assert report.first_event_at == expected[0]["occurred_at"]
    assert report.last_event_at == expected[-1]["occurred_at"]


def test_run_simulation_paces_and_stops(tmp_path: Path) -> None:
    """Verify that a target rate slows a run down and a duration stops it."""
    started = time.perf_counter()
    paced = run_simulation(customers=20, seed=1, rate=2000, max_events=600, progress=False,
                           producer=FakeProducer())
    assert paced.events_sent == 600
    assert time.perf_counter() - started >= 0.25
    assert paced.events_per_s < 2600
    stopped = run_simulation(customers=20, seed=1, rate=1000, duration_s=0.3, progress=False,
                             producer=FakeProducer())
    assert 100 <= stopped.events_sent <= 450


def test_run_simulation_refuses_future_periods() -> None:
    """Verify that a simulated period reaching into the future is refused with a reason."""
    with pytest.raises(ValueError, match="timestamp_in_future"):
        run_simulation(customers=5, seed=1, start=datetime.now(UTC), progress=False,
                       producer=FakeProducer())


def test_a_history_is_sent_at_once_and_the_period_ends_now() -> None:
    """Verify that with history_days the simulated period ends now, its history goes out
    unpaced, and what follows is paced."""
    started = time.perf_counter()
    report = run_simulation(customers=40, seed=2, days=30, history_days=29, rate=20,
                            duration_s=1.0, progress=False, producer=FakeProducer())
    elapsed = time.perf_counter() - started
    assert report.events_sent > 500, "29 days of history in about a second"
    assert elapsed < 5
    last = datetime.fromisoformat(report.last_event_at or "")
    assert timedelta(0) <= datetime.now(UTC) - last <= timedelta(days=1, minutes=5)
