"""The alert rules: a customer's update and rule state in, decisions out. No I/O.

The batch's rules step (:class:`agents.rules.AlertRules`) runs :func:`evaluate_update` over
a micro-batch, each customer with the :class:`CustomerAlertState` the store read with them,
and :func:`fire_cart` for carts whose deadline a watermark passed; the store writes the state
back. Everything here is deterministic in event time and the inputs, so a redelivered
trigger yields the same ``alert_id``:

* a trigger the state has already *seen* (``seen``) repeats the alerts it fired then (kept in
  ``fired``, or ``earlier`` once a later alert of a kind replaced its own), instead of
  counting again or being silenced by its own cooldown. Only a
  redelivery (the same message again, after a crash or a failed round trip) gets here
  twice: an event id the shop sent twice counts once, and the worker hands the rules its
  first message only, so marketing automation gets one alert per trigger;
* cooldowns compare *event* times (``|t - t_last| < cooldown``), never the wall clock.

>>> from datetime import UTC, datetime
>>> from schemas.events import TicketEvent
>>> ticket = TicketEvent(event_id="e1", customer_id="c1", type="ticket", ticket_id="t1",
...                      status="resolved", csat=1,
...                      occurred_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC))
>>> update = CustomerUpdate(tenant="default", customer_id="c1", event=ticket, features={},
...                         scores={"sentiment": -0.8, "urgency": 0.9}, marketing_consent=False)
>>> state = CustomerAlertState()
>>> [decision] = evaluate_update(update, state, AlertConfig(), now=datetime(2026, 1, 5, tzinfo=UTC))
>>> decision.outcome.value, decision.alert.kind.value
('emit', 'negative_ticket')
>>> for part in decision.alert.reason.split(", "):
...     print(part)
Negative support ticket t1 (email
resolved): sentiment -0.80 (threshold -0.20)
CSAT 1/5 (at most 2 alerts)
urgency high (0.90)
>>> [again] = evaluate_update(update, state, AlertConfig(), now=datetime(2026, 1, 6, tzinfo=UTC))
>>> again.outcome.value, again.alert == decision.alert
('repeat', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from agents import alert_reasons as reasons
from agents.alert_config import AlertConfig
from feature_store.rule_state import CustomerAlertState, FiredAlert, OpenCart
from schemas.events import AnyEvent, ClickEvent, ClickKind, PurchaseEvent, TicketEvent
from schemas.records import Alert, AlertKind, Contribution, alert_id_for

__all__ = ["CustomerAlertState", "CustomerUpdate", "Decision", "FiredAlert", "OpenCart",
           "Outcome", "evaluate_update", "fire_cart"]

#: How many recent trigger ids a customer's state remembers to recognise a redelivery.
SEEN_LIMIT = 64


class CustomerUpdate(NamedTuple):
    """One event's effect on one customer, as the models step hands it to the rules.

    ``features`` are the profile features after the event (names as in
    :class:`schemas.profile.CustomerFeatures`, timestamps in epoch ms); ``scores`` the model
    outputs after it (``churn_probability``, ``churn_explanation``, ``clv``,
    ``clv_percentile``, ``sentiment``, ``urgency``, ``anomaly_score``, ``anomaly_reason``,
    ``segment``, ``segment_label``, ``previous_segment``, optionally
    ``previous_segment_label``, and ``model_versions``). ``partition`` is the input partition
    the event was read from (the input topics are co-partitioned); cart timers are kept per
    partition, so an add-to-cart without it opens no timer.
    """

    tenant: str
    customer_id: str
    event: AnyEvent
    features: Mapping[str, Any]
    scores: Mapping[str, Any]
    marketing_consent: bool | None
    partition: int | None = None


class Outcome(StrEnum):
    EMIT = "emit"  # a new alert
    REPEAT = "repeat"  # the alert this very trigger fired before (a redelivery): same id
    SUPPRESSED_CONSENT = "suppressed_consent"
    SUPPRESSED_COOLDOWN = "suppressed_cooldown"


@dataclass(frozen=True)
class Decision:
    alert: Alert
    outcome: Outcome

    @property
    def publish(self) -> bool:
        return self.outcome in (Outcome.EMIT, Outcome.REPEAT)


@dataclass(frozen=True)
class Candidate:
    """A rule's wish to alert, before cooldown and consent have their say."""

    kind: AlertKind
    score: float
    threshold: float
    reason: str
    explanation: list[Contribution]
    model_version: str


def epoch_ms(value: Any) -> int | None:
    """Epoch ms from ms, a datetime or an ISO string (profile timestamps come in all three)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float):
        return int(value)
    text = value.decode() if isinstance(value, bytes) else str(value)
    return int(text) if text.lstrip("-").isdigit() else int(
        datetime.fromisoformat(text).timestamp() * 1000)


def _number(mapping: Mapping[str, Any], name: str) -> float | None:
    value = mapping.get(name)
    return None if value is None else float(value)


def _currency(update: CustomerUpdate) -> str | None:
    """The currency a reason tells amounts in: a purchase's own. No shop currency is known
    otherwise (a customer's totals add up orders whatever their currency), so amounts are
    then plain numbers rather than a guessed symbol."""
    return update.event.currency if isinstance(update.event, PurchaseEvent) else None


def _version(update: CustomerUpdate, model: str) -> str:
    versions = update.scores.get("model_versions") or {}
    return str(versions.get(model) or "rules")


# -- the rules, one per kind -----------------------------------------------------------------


def churn_risk(update: CustomerUpdate, state: CustomerAlertState,
               config: AlertConfig) -> Candidate | None:
    """Above the threshold for K consecutive updates; re-armed below threshold - hysteresis."""
    return _churn_candidate(update.scores, update.features, state, config,
                            at_ms=update.event.occurred_at_ms, currency=_currency(update))


def _churn_candidate(scores: Mapping[str, Any], features: Mapping[str, Any],
                     state: CustomerAlertState, config: AlertConfig, *, at_ms: int,
                     currency: str | None) -> Candidate | None:
    """The churn rule on one scoring of a customer (at their event, or in their silence)."""
    rule = config.churn_risk
    probability = _number(scores, "churn_probability")
    if probability is None:
        return None
    state.churn_streak = state.churn_streak + 1 if probability >= rule.threshold else 0
    if probability < rule.threshold - rule.hysteresis:
        state.churn_armed = True
    if not (rule.enabled and state.churn_armed and state.churn_streak >= rule.consecutive):
        return None
    state.churn_armed = False
    explanation = reasons.contributions(scores.get("churn_explanation") or [])
    reason = reasons.churn_reason(
        probability=probability, threshold=rule.threshold, streak=state.churn_streak,
        explanation=explanation,
        days_without_order=reasons.days_since(epoch_ms(features.get("last_order_at")), at_ms),
        open_tickets=int(features.get("open_tickets") or 0), currency=currency)
    versions = scores.get("model_versions") or {}
    return Candidate(AlertKind.CHURN_RISK, probability, rule.threshold, reason, explanation,
                     str(versions.get("churn") or "rules"))


def churn_in_silence(*, tenant: str, customer_id: str, scores: Mapping[str, Any],
                     features: Mapping[str, Any], state: CustomerAlertState,
                     config: AlertConfig, scored_at_ms: int, now: datetime
                     ) -> Decision | None:
    """The churn rule on a customer the silence sweep re-scored: most churners just stop
    coming, so re-scores count like events. The trigger is the silence since their last
    activity (``silence@<last_seen_at>``): decided again after a crash, the same alert id."""
    candidate = _churn_candidate(scores, features, state, config, at_ms=scored_at_ms,
                                 currency=None)
    if candidate is None:
        return None
    last_seen = epoch_ms(features.get("last_seen_at"))
    return decide(candidate, tenant=tenant, customer_id=customer_id,
                  triggered_by=f"silence@{last_seen}",
                  occurred_at=datetime.fromtimestamp(scored_at_ms / 1000, tz=UTC),
                  state=state, config=config, consent=state.consent, now=now)


def high_value(update: CustomerUpdate, state: CustomerAlertState,
               config: AlertConfig) -> Candidate | None:
    """CLV percentile enters the top (re-armed after falling below it by the hysteresis)."""
    rule = config.high_value
    percentile = _number(update.scores, "clv_percentile")
    population = _number(update.scores, "clv_population")
    if percentile is None or (population is not None and population < rule.min_customers):
        return None
    if percentile < rule.percentile - rule.hysteresis:
        state.high_value_armed = True
    if not (rule.enabled and state.high_value_armed and percentile >= rule.percentile):
        return None
    state.high_value_armed = False
    clv = _number(update.scores, "clv")
    orders = int(update.features.get("orders") or 0)
    revenue = float(update.features.get("revenue") or 0.0)
    explanation = [Contribution(feature="clv_percentile", value=percentile,
                                contribution=round(percentile - rule.percentile, 6))]
    if clv is not None:
        explanation.append(Contribution(feature="clv", value=clv, contribution=0.0))
    reason = reasons.high_value_reason(clv=clv, percentile=percentile, threshold=rule.percentile,
                                       orders=orders, revenue=revenue, currency=_currency(update))
    return Candidate(AlertKind.HIGH_VALUE, percentile, rule.percentile, reason, explanation,
                     _version(update, "clv"))


def negative_ticket(update: CustomerUpdate, config: AlertConfig) -> Candidate | None:
    """A ticket whose sentiment is below the threshold, or resolved with a low CSAT."""
    rule = config.negative_ticket
    event = update.event
    if not (rule.enabled and isinstance(event, TicketEvent)):
        return None
    sentiment = _number(update.scores, "sentiment")
    urgency = _number(update.scores, "urgency")
    by_sentiment = sentiment is not None and sentiment < rule.sentiment_below
    by_csat = event.csat is not None and event.csat <= rule.csat_at_most
    if not (by_sentiment or by_csat):
        return None
    explanation = []
    if sentiment is not None:
        explanation.append(Contribution(feature="sentiment", value=sentiment,
                                        contribution=round(rule.sentiment_below - sentiment, 6)))
    if event.csat is not None:  # +1 for CSAT 1, 0 for a neutral 3, -1 for 5
        explanation.append(Contribution(feature="csat", value=event.csat,
                                        contribution=(3 - event.csat) / 2))
    if urgency is not None:
        explanation.append(Contribution(feature="urgency", value=urgency, contribution=urgency))
    score, threshold = ((sentiment, rule.sentiment_below) if by_sentiment and sentiment is not None
                        else (float(event.csat or 0), float(rule.csat_at_most)))
    reason = reasons.negative_ticket_reason(
        ticket_id=event.ticket_id, channel=event.channel, status=event.status.value,
        sentiment=sentiment, sentiment_below=rule.sentiment_below, csat=event.csat,
        csat_at_most=rule.csat_at_most, urgency=urgency,
        category=update.scores.get("category"))
    return Candidate(AlertKind.NEGATIVE_TICKET, score, threshold, reason, explanation,
                     _version(update, "sentiment"))


def anomalous_purchase(update: CustomerUpdate, config: AlertConfig) -> Candidate | None:
    rule = config.anomalous_purchase
    event = update.event
    score = _number(update.scores, "anomaly_score")
    if not (rule.enabled and isinstance(event, PurchaseEvent) and score is not None
            and score >= rule.threshold):
        return None
    explanation = [Contribution(feature="anomaly_score", value=score,
                                contribution=round(score - rule.threshold, 6))]
    average = _number(update.features, "avg_order_value")
    if average:  # how far above the customer's average order this one is, as a share
        explanation.append(Contribution(feature="order_total", value=event.total,
                                        contribution=round(event.total / average - 1, 6)))
    reason = reasons.anomalous_purchase_reason(
        order_id=event.order_id, total=event.total, currency=event.currency, score=score,
        threshold=rule.threshold, anomaly_reason=update.scores.get("anomaly_reason"))
    return Candidate(AlertKind.ANOMALOUS_PURCHASE, score, rule.threshold, reason, explanation,
                     _version(update, "anomaly"))


def segment_change(update: CustomerUpdate, state: CustomerAlertState,
                   config: AlertConfig) -> Candidate | None:
    segment, previous = update.scores.get("segment"), update.scores.get("previous_segment")
    label = update.scores.get("segment_label")
    previous_label = update.scores.get("previous_segment_label") or (
        state.last_segment_label if state.last_segment == previous else None)
    if segment is not None:
        state.last_segment, state.last_segment_label = int(segment), label
    if not config.segment_change.enabled or segment is None or previous is None:
        return None
    if int(segment) == int(previous):
        return None
    explanation = [Contribution(feature="segment", value=int(segment), contribution=1.0),
                   Contribution(feature="previous_segment", value=int(previous),
                                contribution=-1.0)]
    reason = reasons.segment_reason(previous=int(previous), previous_label=previous_label,
                                    segment=int(segment), label=label)
    return Candidate(AlertKind.SEGMENT_CHANGE, 1.0, 1.0, reason, explanation,
                     _version(update, "segments"))


def track_cart(update: CustomerUpdate, state: CustomerAlertState, config: AlertConfig) -> None:
    """Open a cart timer on add-to-cart; a purchase at or after the cart's time closes it."""
    event = update.event
    at_ms = event.occurred_at_ms
    if isinstance(event, PurchaseEvent):
        if state.cart is not None and at_ms >= state.cart.at_ms:
            state.cart = None
        return
    if not (isinstance(event, ClickEvent) and event.kind is ClickKind.ADD_TO_CART):
        return
    if not config.cart_abandonment.enabled or update.partition is None:
        return
    deadline_ms = at_ms + config.cart_abandonment.timeout_ms
    last_order = epoch_ms(update.features.get("last_order_at"))
    if last_order is not None and at_ms <= last_order <= deadline_ms:
        # Bought within the timeout (processed first). A later last order may be of this
        # batch, after the cart was abandoned: it opens, judged before that (agents.rules).
        return
    if state.cart is not None and state.cart.at_ms > at_ms:
        return  # a later add already keeps the cart open longer
    state.cart = OpenCart(event_id=event.event_id, at_ms=at_ms, deadline_ms=deadline_ms,
                          partition=update.partition,
                          product_id=event.product_id)


# -- decisions -------------------------------------------------------------------------------


def decide(candidate: Candidate, *, tenant: str, customer_id: str, triggered_by: str,
           occurred_at: datetime, state: CustomerAlertState, config: AlertConfig,
           consent: bool | None, now: datetime) -> Decision:
    """Apply redelivery, cooldown and consent to a rule's candidate; record what was sent."""
    kind = candidate.kind
    previous = state.fired.get(kind)
    if previous is not None and previous.triggered_by == triggered_by:
        return Decision(previous.as_alert(), Outcome.REPEAT)
    occurred_at_ms = int(occurred_at.timestamp() * 1000)
    alert = Alert(
        alert_id=alert_id_for(tenant=tenant, customer_id=customer_id, kind=kind.value,
                              triggered_by=triggered_by),
        kind=kind, customer_id=customer_id, tenant=tenant, score=round(candidate.score, 6),
        threshold=candidate.threshold, reason=candidate.reason,
        explanation=candidate.explanation, triggered_by=triggered_by,
        occurred_at=occurred_at.astimezone(UTC), emitted_at=now,
        model_version=candidate.model_version)
    if previous is not None and (abs(occurred_at_ms - previous.occurred_at_ms)
                                 < config.cooldown_ms(kind)):
        return Decision(alert, Outcome.SUPPRESSED_COOLDOWN)
    if config.suppressed_by_consent(kind, consent):
        return Decision(alert, Outcome.SUPPRESSED_CONSENT)
    state.record(kind, FiredAlert(triggered_by, occurred_at_ms, alert.model_dump(mode="json")))
    return Decision(alert, Outcome.EMIT)


def evaluate_update(update: CustomerUpdate, state: CustomerAlertState, config: AlertConfig,
                    *, now: datetime) -> list[Decision]:
    """Run every rule on one update, in order, changing ``state``; at most one per kind."""
    event = update.event
    if update.marketing_consent is not None:
        state.consent = update.marketing_consent
    if not state.remember(event.event_id, SEEN_LIMIT):
        # A redelivery: the state already counted this event. Repeat what it fired, if any.
        # That includes the cart this add-to-cart opened, if it fired: a cart added and due
        # in one batch never had a timer to repeat it from (the timer path repeats the
        # others, and a batch sends each alert id once).
        return [Decision(fired.as_alert(), Outcome.REPEAT)
                for fired in state.fired_by(event.event_id)]
    candidates = [
        churn_risk(update, state, config),
        high_value(update, state, config),
        negative_ticket(update, config),
        anomalous_purchase(update, config),
        segment_change(update, state, config),
    ]
    track_cart(update, state, config)
    return [decide(candidate, tenant=update.tenant, customer_id=update.customer_id,
                   triggered_by=event.event_id, occurred_at=event.occurred_at, state=state,
                   config=config, consent=state.consent, now=now)
            for candidate in candidates if candidate is not None]


def fire_cart(*, tenant: str, customer_id: str, event_id: str, state: CustomerAlertState,
              config: AlertConfig, watermark_ms: int, last_order_at_ms: int | None,
              cart_adds: int, profile_exists: bool, now: datetime) -> Decision | None:
    """Decide about one cart whose deadline the watermark passed; ``None`` when it is moot."""
    if fired := state.fired_by(event_id, AlertKind.CART_ABANDONMENT):  # before a crash
        return Decision(fired[0].as_alert(), Outcome.REPEAT)  # (its timer not yet removed)
    cart = state.cart
    if cart is None or cart.event_id != event_id:
        return None  # bought since, or a later add-to-cart replaced it
    state.cart = None
    rule = config.cart_abandonment
    if not rule.enabled or not profile_exists:
        return None
    if last_order_at_ms is not None and last_order_at_ms >= cart.at_ms:
        return None
    waited_minutes = (watermark_ms - cart.at_ms) / 60_000
    candidate = Candidate(
        AlertKind.CART_ABANDONMENT, round(waited_minutes, 3), rule.timeout / 60,
        reasons.cart_reason(product_id=cart.product_id, added_at_ms=cart.at_ms,
                            timeout_minutes=rule.timeout / 60, cart_adds=cart_adds),
        [Contribution(feature="minutes_since_cart_add", value=round(waited_minutes, 3),
                      contribution=round(waited_minutes - rule.timeout / 60, 3)),
         Contribution(feature="cart_adds", value=cart_adds, contribution=0.0)],
        "rules")
    return decide(candidate, tenant=tenant, customer_id=customer_id, triggered_by=event_id,
                  occurred_at=datetime.fromtimestamp(cart.at_ms / 1000, tz=UTC), state=state,
                  config=config, consent=state.consent, now=now)
