"""Models learn from every event and score every touched customer, once per micro-batch.

The worker's global models (one :class:`~online_models.ModelBundle`) see each new event in
order: activity snapshots for the delayed-label churn and CLV models, tickets for sentiment,
orders for anomalies. The watermark resolves delayed labels. Then each customer touched by
the batch learns into their tenant's segments and is scored once, from their profile after
the batch, by :func:`online_models.score_customer` (the function the silence sweep of
:mod:`agents.rescoring` scores with too), and the scores are written by the store in one
round trip. Duplicates teach nothing. Anonymous visitors are not scored: they are nobody to
win back or to rank (their profiles are merged into a customer's at login).

The recommender's share (learning the batch's interactions, fresh top-N lists) is the
largest and no alert depends on it, so the scorer only collects it. Every recommendations
tick (a quarter second) the worker hands what the batches collected to its recommender
process (:meth:`ModelScorer.take_recommendation_work`, see :mod:`agents.recommending`), or,
without one, does it itself once each batch's alerts are out
(:meth:`ModelScorer.refresh_recommendations`) and writes the lists in the round trip that
records the batch's progress.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agents.alert_rules import CustomerUpdate
from agents.recommending import Interaction, RecommendationWork, apply_work
from feature_store import FeatureStore
from feature_store.client import Pipeline
from feature_store.keys import anonymous_profile_id
from feature_store.model_inputs import ModelInput, ModelInputs
from feature_store.scores import ScoreRecord
from online_models import (
    CustomerScores,
    ModelBundle,
    ModelStatus,
    behaviour_vector,
    model_statuses,
    score_customer,
    scoring_time,
)
from schemas.events import ClickEvent, ClickKind, PurchaseEvent, TicketEvent, TicketStatus
from schemas.profile import ScoreStatus
from schemas.records import Contribution

log = logging.getLogger(__name__)

AnyEvent = ClickEvent | PurchaseEvent | TicketEvent

_INTERACTIONS = {ClickKind.PRODUCT_VIEW: "view", ClickKind.ADD_TO_CART: "cart"}
_ANONYMOUS = anonymous_profile_id("")


def is_customer(profile_id: str) -> bool:
    """Whether a profile is a customer's (not an anonymous visitor's)."""
    return not profile_id.startswith(_ANONYMOUS)


def _ticket_text(event: TicketEvent) -> str:
    return f"{event.subject}\n{event.body}".strip()


@dataclass
class EventScores:
    """Scores that belong to one event rather than to the customer (tickets, orders)."""

    sentiment: float | None = None
    urgency: float | None = None
    anomaly_score: float | None = None
    anomaly_reason: str | None = None


def touched_customers(events: Sequence[tuple[AnyEvent, str, int, bool]]
                      ) -> list[tuple[str, str]]:
    """The (tenant, profile id) pairs of a batch's events, in order, each once."""
    return list(dict.fromkeys((e.tenant, profile_id) for e, profile_id, _, _ in events))


def score_record(tenant: str, customer_id: str, scores: CustomerScores, *,
                 previous_segment: int | None, model_version: str,
                 partition: int | None = None, sentiment: float | None = None,
                 anomaly_score: float | None = None) -> ScoreRecord:
    """The models' scores of one customer as the store writes them."""
    return ScoreRecord(
        tenant=tenant, customer_id=customer_id, scored_at_ms=scores.scored_at_ms,
        churn_probability=scores.churn_probability,
        churn_explanation=[Contribution(**c._asdict()) for c in scores.churn_explanation],
        churn_status=_status(scores.churn_status), clv=scores.clv,
        clv_status=_status(scores.clv_status), segment=scores.segment,
        segment_label=scores.segment_label, previous_segment=previous_segment,
        model_version=model_version, partition=partition, sentiment=sentiment,
        anomaly_score=anomaly_score)


def _status(status: ModelStatus) -> ScoreStatus:
    return ScoreStatus(status=status.status, examples=status.examples, needed=status.needed,
                       pending=status.pending)


class ModelScorer:
    """Teach the bundle a batch of new events and write every touched customer's scores."""

    def __init__(
        self,
        *,
        store: FeatureStore,
        bundle: ModelBundle,
        recommendation_refresh_s: float = 5.0,
        lists_per_call: int = 25,
    ) -> None:
        self.store = store
        self.bundle = bundle
        self.recommendation_refresh_s = recommendation_refresh_s
        self.lists_per_call = lists_per_call
        self._recommended_at: dict[tuple[str, str], float] = {}
        self.tenants_seen: set[str] = set()
        # The recommender's work of the batches scored since the last refresh, in order.
        self._interactions: list[Interaction] = []
        # Customers due for a fresh list, first due first; a customer due again keeps their
        # place and gets their newest inputs.
        self._due_recommendations: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
        #: Customers scored by batches since the silence sweep last cleared it: a sweep
        #: that read a customer before a batch scored them must not write over the batch.
        self.scored_since_sweep: set[tuple[str, str]] = set()

    async def on_batch(
        self,
        events: Sequence[tuple[AnyEvent, str, int, bool]],
        watermark_ms: int | None,
        inputs: ModelInputs,
    ) -> list[CustomerUpdate]:
        """Learn from the new events and score every customer the batch touched.

        ``events`` are (event, profile id, input partition, is new): duplicates (``is new``
        false) teach nothing but are scored again, so a trigger redelivered after a crash
        reaches the alert rules once more and repeats its alert with the same id.
        ``inputs`` are the :func:`touched_customers`' profiles as the batch left them.
        """
        if not events:
            if watermark_ms is not None:
                self.bundle.churn.advance_watermark(watermark_ms)
                self.bundle.clv.advance_watermark(watermark_ms)
            return []
        self.tenants_seen.update(tenant for tenant, _ in touched_customers(events))
        learnt_before = len(self._interactions)
        per_event = []
        for event, profile_id, _, new in events:
            model_input = inputs.get((event.tenant, profile_id))
            # A redelivered trigger is judged on its own scores again (a kind ticket stays
            # kind), not on the customer's, which may include later events by now.
            per_event.append(self._learn(event, model_input, profile_id) if new
                             else self._event_scores(event, model_input))
        self._observe_activity(events, inputs)
        if watermark_ms is not None:
            self.bundle.churn.advance_watermark(watermark_ms)
            self.bundle.clv.advance_watermark(watermark_ms)
        interacted = {(i.tenant, i.customer_id) for i in self._interactions[learnt_before:]}
        self._queue_recommendations(inputs, interacted)
        records, scores = self._score_customers(inputs, events, per_event, watermark_ms)
        percentiles = await self.store.write_scores(records, clv_percentiles=True)
        self.scored_since_sweep.update(scores)
        updates = []
        for (event, profile_id, partition, _), extra in zip(events, per_event, strict=True):
            key = (event.tenant, profile_id)
            if key not in inputs:
                continue
            customer_scores = dict(scores.get(key, {}))
            if key in percentiles:
                customer_scores["clv_percentile"], customer_scores["clv_population"] = (
                    percentiles[key])
            customer_scores.update({k: v for k, v in vars(extra).items() if v is not None})
            updates.append(CustomerUpdate(
                tenant=event.tenant, customer_id=profile_id, event=event,
                features=inputs[key].profile, scores=customer_scores,
                marketing_consent=inputs[key].marketing_consent, partition=partition))
        return updates

    def _event_scores(self, event: AnyEvent, model_input: ModelInput | None) -> EventScores:
        """The event's own scores (a purchase's anomaly, a ticket's sentiment and urgency),
        learning nothing."""
        scores = EventScores()
        if model_input is None:
            return scores
        if isinstance(event, PurchaseEvent):
            history = [total for order_id, total in model_input.order_totals
                       if order_id != event.order_id]
            anomaly = self.bundle.anomaly.score(event.total, event.items_bought, history)
            scores.anomaly_score, scores.anomaly_reason = anomaly.score, anomaly.reason
        elif isinstance(event, TicketEvent):
            text = _ticket_text(event)
            if text:
                sentiment = self.bundle.sentiment.score(text)
                scores.sentiment, scores.urgency = sentiment.sentiment, sentiment.urgency
            if event.csat is not None and scores.sentiment is None:
                scores.sentiment = (event.csat - 3) / 2
        return scores

    def _learn(self, event: AnyEvent, model_input: ModelInput | None, customer: str) -> EventScores:
        """:meth:`_event_scores`, then learn from the event (the models first scored it as
        unseen, as progressive validation wants)."""
        scores = self._event_scores(event, model_input)
        if model_input is None:
            return scores
        bundle, profile = self.bundle, model_input.profile
        at_ms = event.occurred_at_ms
        recent = profile["recent_products"]
        if isinstance(event, PurchaseEvent):
            bundle.anomaly.learn(event.total, event.items_bought)
            # The profile already holds this order: what the list served before it excluded
            # was the bought set without this order's products.
            bought_before = model_input.bought - {item.product_id for item in event.items}
            self._interactions.append(Interaction(
                event.tenant, customer, tuple(item.product_id for item in event.items),
                "purchase", at_ms, recent, bought_before))
        elif isinstance(event, ClickEvent):
            kind = _INTERACTIONS.get(event.kind)
            if kind and event.product_id:
                self._interactions.append(Interaction(
                    event.tenant, customer, (event.product_id,), kind, at_ms, recent))
        elif event.status is TicketStatus.RESOLVED and event.csat is not None:
            text = _ticket_text(event)
            if text:
                bundle.sentiment.learn(text, event.csat)
        return scores

    def _observe_activity(
        self,
        events: Sequence[tuple[AnyEvent, str, int, bool]],
        inputs: dict[tuple[str, str], ModelInput],
    ) -> None:
        """One activity snapshot per customer per batch, at their latest new event.

        A session is a burst of clicks, and activity within a day replaces the pending
        snapshot anyway, so observing each click would cost much and teach nothing more.
        """
        latest: dict[tuple[str, str], int] = {}
        orders: dict[tuple[str, str], tuple[int, float]] = {}
        for event, profile_id, _, new in events:
            key = (event.tenant, profile_id)
            if not new or key not in inputs or not is_customer(profile_id):
                continue
            latest[key] = max(latest.get(key, 0), event.occurred_at_ms)
            if isinstance(event, PurchaseEvent):
                count, spend = orders.get(key, (0, 0.0))
                orders[key] = (count + 1, spend + event.total)
        for key, at_ms in sorted(latest.items(), key=lambda item: item[1]):
            profile = inputs[key].profile
            count, spend = orders.get(key, (0, 0.0))
            self.bundle.churn.observe_activity(key[1], profile, at_ms)
            self.bundle.clv.observe_activity(key[1], profile, at_ms, purchases=count,
                                             spend=spend)

    def _queue_recommendations(self, inputs: ModelInputs,
                               interacted: set[tuple[str, str]]) -> None:
        """A fresh list when the customer interacted with products (or has none yet), at
        most one per refresh interval; nothing else changes what they are shown."""
        wall = time.monotonic()
        for key, model_input in inputs.items():
            listed_at = self._recommended_at.get(key)
            if listed_at is None or (
                    key in interacted and wall - listed_at >= self.recommendation_refresh_s):
                self._recommended_at[key] = wall
                self._due_recommendations[key] = (model_input.bought,
                                                  model_input.profile["recent_products"])

    def _score_customers(
        self,
        inputs: ModelInputs,
        events: Sequence[tuple[AnyEvent, str, int, bool]],
        per_event: list[EventScores],
        watermark_ms: int | None,
    ) -> tuple[list[ScoreRecord], dict[tuple[str, str], dict[str, Any]]]:
        """Each customer of the batch learnt into their segments and scored once: the
        records to write, and the scores the alert rules read."""
        bundle = self.bundle
        ticket_sentiment: dict[tuple[str, str], float] = {}
        last_anomaly: dict[tuple[str, str], float] = {}
        # The partition a customer's own events arrive on (keyed by customer id) holds them
        # in its scoring index; a visitor's partition does not.
        owner_partition: dict[tuple[str, str], int] = {}
        for (event, profile_id, partition, new), extra in zip(events, per_event, strict=True):
            key = (event.tenant, profile_id)
            if event.customer_id == profile_id:
                owner_partition[key] = partition
            if not new:
                continue  # it was folded into the customer's scores when it was new
            if extra.sentiment is not None:
                ticket_sentiment[key] = extra.sentiment
            if extra.anomaly_score is not None:
                last_anomaly[key] = extra.anomaly_score
        versions = bundle.model_versions()
        model_version = bundle.version
        statuses = model_statuses(bundle)
        records: list[ScoreRecord] = []
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for key, model_input in inputs.items():
            tenant, customer = key
            if not is_customer(customer):
                continue
            profile = model_input.profile
            bundle.segments.learn(tenant, customer, behaviour_vector(profile))
            scores = score_customer(bundle, tenant, profile,
                                    scoring_time(profile, watermark_ms), statuses)
            sentiment = profile.get("sentiment")
            if key in ticket_sentiment:  # an exponential average over the customer's tickets
                fresh = ticket_sentiment[key]
                sentiment = fresh if sentiment is None else 0.5 * sentiment + 0.5 * fresh
            previous = model_input.previous_segment
            records.append(score_record(
                tenant, customer, scores, previous_segment=previous,
                model_version=model_version, partition=owner_partition.get(key),
                sentiment=sentiment if key in ticket_sentiment else None,
                anomaly_score=last_anomaly.get(key)))
            labels = bundle.segments.of(tenant).labels()
            results[key] = {
                "churn_probability": scores.churn_probability,
                "churn_explanation": records[-1].churn_explanation,
                "segment": scores.segment, "segment_label": scores.segment_label,
                "previous_segment": previous,
                "previous_segment_label": labels.get(previous) if previous is not None
                else None,
                "clv": scores.clv, "sentiment": sentiment, "model_versions": versions,
            }
        return records, results

    @property
    def lists_due(self) -> int:
        """Customers waiting for a fresh recommendation list."""
        return len(self._due_recommendations)

    def take_recommendation_work(self, lists: int | None = None) -> RecommendationWork:
        """The recommender's share of the batches scored since the last call: their
        interactions in order, and the first ``lists`` customers due for a fresh list (all
        when None; at most one list per ``recommendation_refresh_s`` each)."""
        interactions, self._interactions = self._interactions, []
        due = dict(itertools.islice(self._due_recommendations.items(), lists))
        for key in due:
            del self._due_recommendations[key]
        return RecommendationWork(interactions=interactions, due=due)

    def refresh_recommendations(self) -> Callable[[Pipeline], None]:
        """The recommender's work done here, in the worker (when it has no process of its
        own, see :mod:`agents.recommending`): learn the interactions and list the first
        ``lists_per_call`` customers due. Answers the writes of the lists, for the caller
        to queue on a pipeline of its own.

        Listing is most of the recommender's cost and nothing waits on it, so under load it
        is spread over the following calls: lists get a little older instead of every batch
        (and every alert behind it) getting slower. The worker also calls this on a timer,
        so lists still due when traffic stops are written all the same.
        """
        lists = apply_work(self.bundle.recommender,
                           self.take_recommendation_work(self.lists_per_call))

        def write(pipe: Pipeline) -> None:
            for key, value in lists.items():
                pipe.set(key, value)

        return write

    async def publish_segments(self, tenants: set[str] | None = None) -> None:
        """Segment labels, sizes and centroids for the API (a small hash per tenant).

        Called on the telemetry timer rather than per batch: sizes and centroids move slowly.
        """
        for tenant in self.tenants_seen if tenants is None else tenants:
            summaries = self.bundle.segments.of(tenant).summaries()
            await self.store.publish_segments(
                tenant, [(s.segment, s.label, s.centroid) for s in summaries])

    async def forget(self, tenant: str, customer_id: str) -> None:
        """Erasure: drop what the models keep of the customer (the store erased the rest)."""
        self._interactions = [i for i in self._interactions
                              if (i.tenant, i.customer_id) != (tenant, customer_id)]
        self._due_recommendations.pop((tenant, customer_id), None)
        self.bundle.segments.forget(tenant, customer_id)
        await self.publish_segments({tenant})
        self.bundle.churn.forget(customer_id)
        self.bundle.clv.forget(customer_id)
        self.bundle.recommender.forget(customer_id)
