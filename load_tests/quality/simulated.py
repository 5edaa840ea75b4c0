"""Our own simulated shop, judged like the families: its hidden truth as a :class:`Shop`.

The simulator (``crm simulate``, ``crm dev --simulate``) plants five latent segments, churn
dates, tastes and ticket moods. Here its events and truth are put in the shape the families
have, so the simulated shop goes through the same served evaluation
(:func:`~load_tests.quality.family_run.run_shop`): planted group = latent segment, churned =
no event at or after ``churn_at``, favourite category = the first preferred one.

A ticket is clear-cut as in the families: its text is written in a clear mood and its CSAT
agrees. The simulator words a ticket by its customer's mood and draws the CSAT from it, but
a customer of neutral mood still rates 1 in 10 tickets 2 (and a reopened ticket one lower):
those tickets read "could you tell me when order o-1 will be delivered? Thanks." No text
model can call them negative, so counting them (as this module did until December 2026)
capped the measurable ``negative_ticket`` recall at 0.90 on seed 11. They still get their
alert from the CSAT at resolution; they are simply not a test of the text model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from load_tests.quality.families import CustomerTruth, Shop
from simulator import ShopSimulator
from simulator.population import SEGMENTS

#: A fixed start in the past, so every run replays the same shop (events may not be in the
#: future) and the period ends long before today.
START = datetime(2025, 1, 1, tzinfo=UTC)


def _ms(timestamp: str) -> int:
    return round(datetime.fromisoformat(timestamp).timestamp() * 1000)


def simulated_shop(*, customers: int, days: float, seed: int,
                   catalogue_size: int = 2000) -> Shop:
    """The simulated shop's events and hidden truth."""
    simulator = ShopSimulator(customers=customers, seed=seed, start=START, days=days,
                              catalogue_size=catalogue_size)
    events = [dict(event) for event in simulator.events()]
    records = simulator.ground_truth()
    mood = {record["customer_id"]: record["mood"] for record in records}
    ticket_truth: dict[str, int] = {}
    for event in events:
        if event["type"] == "ticket" and event.get("csat") is not None:
            ticket_truth[event["ticket_id"]] = _ticket_truth(mood[event["customer_id"]],
                                                             int(event["csat"]))
    truth = {record["customer_id"]: _truth(record) for record in records}
    return Shop(family="simulated", seed=seed, tenant="default",
                start_ms=round(START.timestamp() * 1000),
                end_ms=round((START + timedelta(days=days)).timestamp() * 1000),
                events=events, event_ms=tuple(_ms(e["occurred_at"]) for e in events),
                truth=truth, groups=tuple(segment.name for segment in SEGMENTS),
                ticket_truth=ticket_truth, catalogue=simulator.catalogue)


def _ticket_truth(mood: str, csat: int) -> int:
    """+1 clearly positive (happy wording, CSAT 4-5), -1 clearly negative (angry wording,
    CSAT 1-2), 0 neutral or mixed.

    >>> _ticket_truth("angry", 1), _ticket_truth("neutral", 2), _ticket_truth("happy", 3)
    (-1, 0, 0)
    """
    if mood == "angry" and csat <= 2:
        return -1
    if mood == "happy" and csat >= 4:
        return 1
    return 0


def _truth(record: dict[str, Any]) -> CustomerTruth:
    """The simulator's truth record as the families' (rates it does not report are 0)."""
    churn_at = record["churn_at"]
    return CustomerTruth(
        customer_id=record["customer_id"], group=int(record["segment"]),
        churned=churn_at is not None,
        stopped_at_ms=_ms(churn_at) if churn_at is not None else None,
        favourite_category=record["preferred_categories"][0],
        favourite_products=tuple(record["favourite_products"]),
        joined_at_ms=_ms(record["first_seen_at"]), last_event_ms=0, visits_per_week=0.0,
        cart_rate=0.0, order_rate=0.0, orders_per_week=0.0, mean_basket_value=0.0,
        tickets_per_week=0.0, burst_period_days=None, fade_started_at_ms=None,
        marketing_consent=bool(record["consent"]), anonymous_id="", orders=0, revenue=0.0)
