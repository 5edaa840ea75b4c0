"""Sentences a marketer can read, and small signed explanations, for every alert kind.

Pure formatting: numbers in, text and :class:`~schemas.records.Contribution` records out.
Money is told in the currency the caller knows (a purchase's own), never a guessed symbol:

>>> churn_driver(Contribution(feature="order_recency_days", value=41.2, contribution=0.9))
'no order for 41 days'
>>> churn_driver(Contribution(feature="revenue", value=801.7, contribution=0.2), currency="EUR")
'801.70 EUR spent'
>>> churn_driver(Contribution(feature="avg_order_value", value=1250.0, contribution=0.1))
'average order 1,250.00'
>>> churn_driver(Contribution(feature="log_orders", value=0.6931471805599453, contribution=0.3))
'only 1 order'
>>> urgency_words(0.85)
'high'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.records import Contribution


def _plural(count: float, word: str) -> str:
    number = round(count)
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _original_units(name: str, value: float) -> tuple[str, float]:
    """Undo the churn model's ``log1p`` features, so ``log_orders`` reads as ``orders``."""
    if name.startswith("log_"):
        return name[4:], math.expm1(value)
    return name, value


def money(amount: float, currency: str | None) -> str:
    """An amount with its ISO currency code, or a plain number when no currency is known."""
    return f"{amount:,.2f} {currency}" if currency else f"{amount:,.2f}"


def churn_driver(contribution: Contribution, currency: str | None = None) -> str:
    """One contribution that pushed churn risk up, in words (amounts in ``currency``)."""
    name, value = _original_units(contribution.feature, contribution.value)
    phrases = {
        "order_recency_days": lambda v: f"no order for {v:.0f} days",
        "recency_days": lambda v: f"not seen for {v:.0f} days",
        "recency_over_gap": lambda v: f"silent for {v:.1f}x their usual gap between orders",
        "gap_days": lambda v: f"usually {v:.0f} days between orders",
        "open_tickets": lambda v: _plural(v, "open ticket"),
        "sentiment": lambda v: f"ticket sentiment {v:+.2f}",
        "one_time_buyer": lambda v: "a single order so far" if v >= 0.5 else "a repeat buyer",
        "orders": lambda v: f"only {_plural(v, 'order')}",
        "orders_per_month": lambda v: f"{v:.1f} orders a month",
        "revenue": lambda v: f"{money(v, currency)} spent",
        "avg_order_value": lambda v: f"average order {money(v, currency)}",
        "tenure_days": lambda v: f"a customer for {v:.0f} days",
        "views": lambda v: f"only {_plural(v, 'page view')}",
        "sessions": lambda v: f"only {_plural(v, 'session')}",
        "cart_adds": lambda v: _plural(v, "cart add"),
    }
    phrase = phrases.get(name)
    return phrase(value) if phrase else f"{name.replace('_', ' ')} {value:g}"


def contributions(raw: Iterable[Any], limit: int = 5) -> list[Contribution]:
    """Normalise an explanation (records, dicts or ``(feature, value, contribution)`` tuples),
    largest magnitude first."""
    records: list[Contribution] = []
    for item in raw:
        if isinstance(item, Contribution):
            records.append(item)
        elif isinstance(item, Mapping):
            records.append(Contribution.model_validate(item))
        else:
            feature, value, contribution = item
            records.append(Contribution(feature=str(feature), value=float(value),
                                        contribution=float(contribution)))
    records.sort(key=lambda c: -abs(c.contribution))
    return records[:limit]


def days_since(earlier_ms: int | None, now_ms: int) -> float | None:
    return None if earlier_ms is None else max(0.0, (now_ms - earlier_ms) / 86_400_000)


def churn_reason(*, probability: float, threshold: float, streak: int,
                 explanation: list[Contribution], days_without_order: float | None,
                 open_tickets: int, currency: str | None) -> str:
    head = (f"Churn risk {probability:.2f} (threshold {threshold:.2f}) for "
            f"{_plural(streak, 'consecutive update')}")
    drivers = [churn_driver(c, currency) for c in explanation if c.contribution > 0][:3]
    if not drivers:
        if days_without_order is not None:
            drivers.append(f"no order for {days_without_order:.0f} days")
        if open_tickets:
            drivers.append(_plural(open_tickets, "open ticket"))
    return f"{head}: {', '.join(drivers)}" if drivers else head


def _ordinal_percent(share: float) -> str:
    return f"{share * 100:.1f}".rstrip("0").rstrip(".")


def high_value_reason(*, clv: float | None, percentile: float, threshold: float,
                      orders: int, revenue: float, currency: str | None) -> str:
    top = _ordinal_percent(1 - threshold)
    value = f"CLV {money(clv, currency)}, " if clv is not None else ""
    return (f"Entered the top {top}% of customers by lifetime value: {value}"
            f"{_ordinal_percent(percentile)}th percentile (threshold {_ordinal_percent(threshold)}"
            f"th), {_plural(orders, 'order')}, {money(revenue, currency)} spent")


def urgency_words(urgency: float) -> str:
    return "high" if urgency >= 0.7 else "medium" if urgency >= 0.4 else "low"


def negative_ticket_reason(*, ticket_id: str, channel: str, status: str,
                           sentiment: float | None, sentiment_below: float,
                           csat: int | None, csat_at_most: int, urgency: float | None,
                           category: str | None = None) -> str:
    findings = []
    if sentiment is not None and sentiment < sentiment_below:
        findings.append(f"sentiment {sentiment:+.2f} (threshold {sentiment_below:+.2f})")
    if csat is not None and csat <= csat_at_most:
        findings.append(f"CSAT {csat}/5 (at most {csat_at_most} alerts)")
    if urgency is not None:
        findings.append(f"urgency {urgency_words(urgency)} ({urgency:.2f})")
    about = f"{category}, " if category else ""
    return (f"Negative support ticket {ticket_id} ({about}{channel}, {status}): "
            + ", ".join(findings))


def model_drift_reason(*, model: str, error_before: float, error_after: float,
                       examples: int) -> str:
    return (f"The {model} model's error rose from {error_before:.3f} to {error_after:.3f} "
            f"(ADWIN, after {examples:,} scored examples): its scores are less reliable "
            "until it has learnt the change")


def anomalous_purchase_reason(*, order_id: str, total: float, currency: str, score: float,
                              threshold: float, anomaly_reason: str | None) -> str:
    head = (f"Unusual purchase {order_id} of {money(total, currency)}: anomaly score "
            f"{score:.2f} (threshold {threshold:.2f})")
    return f"{head}; {anomaly_reason}" if anomaly_reason else head


def cart_reason(*, product_id: str | None, added_at_ms: int, timeout_minutes: float,
                cart_adds: int) -> str:
    added = datetime.fromtimestamp(added_at_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    what = f"product {product_id}" if product_id else "a product"
    adds = f" ({_plural(cart_adds, 'cart add')} so far)" if cart_adds else ""
    return (f"Cart abandoned: added {what} to the cart at {added} and no purchase within "
            f"{timeout_minutes:g} minutes{adds}")


def _segment_name(number: int, label: str | None) -> str:
    return f'segment {number} "{label}"' if label else f"segment {number}"


def segment_reason(*, previous: int, previous_label: str | None, segment: int,
                   label: str | None) -> str:
    return (f"Moved from {_segment_name(previous, previous_label)} to "
            f"{_segment_name(segment, label)}")
