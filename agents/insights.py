"""The models step's share beyond a customer's scores: the revenue forecast, tickets'
triage records and labels, and each model's drift.

Purchases feed the revenue forecaster, whose hourly and daily buckets close (and are learnt)
as the watermark passes them; the latest closed buckets are kept beside what was forecast
for them, for the dashboard. Tickets support labelled teach triage, resolved ones with a CSAT
teach sentiment. Every error a model was scored with before it learnt (churn and CLV as their
labels resolve, sentiment on CSAT, triage on labels, the daily whole-revenue forecast) feeds
its ADWIN detector; a drift found goes to the rules as a ``model_drift`` alert.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from feature_store import CustomerKey
from feature_store.tickets import TicketRecord
from online_models import ALL_CATEGORIES, DriftEvent, ModelBundle, TriageResult
from schemas.api import FORECAST_HORIZONS
from schemas.events import PurchaseEvent, TicketEvent, TicketStatus

log = logging.getLogger(__name__)

#: Closed buckets kept per forecast series for the dashboard (two months of days).
FORECAST_HISTORY = 60

Series = tuple[str, str, str]  # tenant, category, granularity


def ticket_records(triaged: Iterable[tuple[CustomerKey, TicketEvent, TriageResult,
                                           float | None, float | None]]
                   ) -> list[TicketRecord]:
    """The triage of each ticket of a batch, as of its latest event with text: from
    (customer, event, triage, urgency, sentiment) in event-time order."""
    records: dict[tuple[str, str], TicketRecord] = {}
    for (tenant, customer_id), event, triage, urgency, sentiment in triaged:
        records[(tenant, event.ticket_id)] = TicketRecord(
            tenant=tenant, customer_id=customer_id, ticket_id=event.ticket_id,
            channel=event.channel, subject=event.subject[:200], category=triage.category,
            category_probability=round(triage.probability, 4), category_source=triage.source,
            urgency=urgency, sentiment=sentiment, at_ms=event.occurred_at_ms)
    return list(records.values())


def category_totals(event: PurchaseEvent) -> dict[str, float]:
    """A purchase's amount per category (its lines without one: ``"uncategorised"``)."""
    totals: dict[str, float] = {}
    for item in event.items:
        category = item.category or "uncategorised"
        totals[category] = totals.get(category, 0.0) + item.unit_price * item.quantity
    return totals


class Insights:
    """What the bundle's forecaster, triage and drift detectors learn from a batch."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        #: The latest closed buckets of each series: (start ms, revenue, forecast for it).
        self.forecast_history: dict[Series, deque[tuple[int, float, float | None]]] = {}
        self._forecasts: dict[Series, tuple[int, dict[str, Any]]] = {}
        self._drifts: list[DriftEvent] = []

    def track_drift(self, model: str, error: float, at_ms: int) -> None:
        found = self.bundle.drift.update(model, error, at_ms)
        if found is not None:
            log.warning("drift: %s", found.reason)
            self._drifts.append(found)

    def take_drifts(self) -> list[DriftEvent]:
        """The drifts found since the last call."""
        drifts, self._drifts = self._drifts, []
        return drifts

    def observe_purchase(self, tenant: str, event: PurchaseEvent) -> None:
        self.bundle.forecast.observe_purchase(tenant, event.occurred_at_ms, event.total,
                                              category_totals(event))

    def advance_watermark(self, watermark_ms: int) -> None:
        """Close the forecast buckets the watermark passed, and watch the errors of the
        models whose labels it resolved."""
        for bucket in self.bundle.forecast.advance_watermark(watermark_ms):
            key = (bucket.tenant, bucket.category, bucket.granularity)
            history = self.forecast_history.get(key)
            if history is None:
                history = self.forecast_history[key] = deque(maxlen=FORECAST_HISTORY)
            history.append((bucket.start_ms, bucket.revenue, bucket.forecast))
            if (bucket.scaled_error is not None and bucket.category == ALL_CATEGORIES
                    and bucket.granularity == "day"):
                self.track_drift("forecast", min(bucket.scaled_error, 10.0), bucket.end_ms)

    def watch_label_errors(self) -> None:
        """The errors of churn and CLV on the labels resolved since the last call."""
        for name in ("churn", "clv"):
            for error, at_ms in getattr(self.bundle, name).take_errors():
                self.track_drift(name, error, at_ms)

    def learn_ticket(self, event: TicketEvent, text: str, sentiment: float | None) -> None:
        """Learn sentiment from a resolved ticket's CSAT and its category from support's
        label, each scored first (``sentiment``: what was served for it)."""
        at_ms = event.occurred_at_ms
        if event.status is TicketStatus.RESOLVED and event.csat is not None:
            if event.csat != 3 and sentiment is not None:
                self.track_drift("sentiment", float((sentiment > 0) != (event.csat >= 4)),
                                 at_ms)
            self.bundle.sentiment.learn(text, event.csat)
        if event.category is not None:
            served = self.bundle.triage.learn(text, event.category)
            self.track_drift("triage", float(served.category != event.category), at_ms)

    def forecast_payloads(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per tenant, each forecast series as the store publishes it (see
        :mod:`feature_store.forecasts`): the next buckets with intervals, and the closed ones
        beside what was forecast for them. A series is forecast again only once it learnt."""
        forecaster = self.bundle.forecast
        payloads: dict[str, dict[str, dict[str, Any]]] = {}
        for key in list(forecaster.series):
            tenant, category, granularity = key
            learnt = forecaster.series[key].model.observations
            cached = self._forecasts.get(key)
            if cached is None or cached[0] != learnt:
                cached = self._forecasts[key] = (learnt, self._payload(key))
            payloads.setdefault(tenant, {})[f"{category}|{granularity}"] = cached[1]
        return payloads

    def _payload(self, key: Series) -> dict[str, Any]:
        tenant, category, granularity = key
        forecast = self.bundle.forecast.forecast(tenant, granularity,
                                                 FORECAST_HORIZONS[granularity], category)
        assert forecast is not None
        return {
            "status": forecast.status, "as_of": forecast.as_of_ms,
            "buckets_learnt": forecast.buckets_learnt, "interval_level": forecast.interval_level,
            "mape": forecast.mape, "mase": forecast.mase, "coverage": forecast.coverage,
            "points": [[p.start_ms, round(p.revenue, 2), round(p.lower, 2), round(p.upper, 2)]
                       for p in forecast.points],
            "history": [[start, round(revenue, 2), None if served is None else round(served, 2)]
                        for start, revenue, served in self.forecast_history.get(key, ())]}
