"""The batch's models step: learn from the new events, score each customer once, in memory.

The worker's global models (one :class:`~online_models.ModelBundle`) see each new event in
order: activity snapshots for the delayed-label churn and CLV models (one per customer and
batch, at their latest event), tickets for sentiment, orders for anomalies. The watermark
resolves delayed labels. Then each customer of the batch learns into their tenant's
segments and is scored once, from their profile after all of their events, by
:func:`online_models.score_customer` (the function the silence sweep of
:mod:`agents.rescoring` scores with too). Redeliveries teach nothing but are judged again.
Anonymous visitors are not scored: they are nobody to win back or to rank (their profiles
are merged into a customer's at login).

The step answers plain data: the score records the batch commits, and one
:class:`~agents.alert_rules.CustomerUpdate` per event for the alert rules. Nothing here
touches Redis.

Every ticket with text is triaged (category, urgency, sentiment); the revenue forecast,
ticket labels and drift detection are :mod:`agents.insights`'s share.

The recommender's share (learning the batch's interactions, fresh top-N lists) is the
largest and no alert depends on it, so the step only collects it. Every recommendations
tick (a quarter second) the worker hands what the batches collected to its recommender
process (:meth:`ModelStep.take_recommendation_work`, see :mod:`agents.recommending`), or,
without one, makes a few lists itself after each batch's alerts are out
(:meth:`ModelStep.lists_in_worker`), committed with the batch. Who is due a list, and
when, is :class:`~agents.list_schedule.ListSchedule`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agents.alert_rules import CustomerUpdate
from agents.insights import Insights, ticket_records
from agents.list_schedule import ListSchedule
from agents.recommending import Interaction, RecommendationWork, apply_work
from agents.score_records import score_record
from feature_store import Customer, CustomerKey
from feature_store.keys import anonymous_profile_id
from feature_store.ranking import RankingSketch
from feature_store.scores import ScoreRecord
from feature_store.tickets import TicketRecord
from online_models import (
    DriftEvent,
    ModelBundle,
    TriageResult,
    behaviour_vector,
    model_statuses,
    score_customer,
    scoring_time,
)
from schemas.events import (
    AnyEvent,
    ClickEvent,
    ClickKind,
    PurchaseEvent,
    TicketEvent,
)

log = logging.getLogger(__name__)

_INTERACTIONS = {ClickKind.PRODUCT_VIEW: "view", ClickKind.ADD_TO_CART: "cart"}
_ANONYMOUS = anonymous_profile_id("")


def is_customer(profile_id: str) -> bool:
    """Whether a profile is a customer's (not an anonymous visitor's).

    >>> is_customer("c-1"), is_customer("anon:v-1")
    (True, False)
    """
    return not profile_id.startswith(_ANONYMOUS)


def _ticket_text(event: TicketEvent) -> str:
    return f"{event.subject}\n{event.body}".strip()


class ModelEvent(NamedTuple):
    """An event the models see: its customer (tenant, profile id), the input partition it
    came from, and whether it is ``new`` (false: a redelivery, judged again, learnt from
    never twice)."""

    event: AnyEvent
    customer: CustomerKey
    partition: int
    new: bool = True


@dataclass(frozen=True, slots=True)
class EventScores:
    """Scores that belong to one event rather than to the customer (tickets, orders)."""

    sentiment: float | None = None
    urgency: float | None = None
    anomaly_score: float | None = None
    anomaly_reason: str | None = None
    #: The ticket's triage (the alert rules see its ``category``).
    triage: TriageResult | None = None

    def as_scores(self) -> dict[str, Any]:
        """What the alert rules read of them, beside the customer's scores."""
        scores: dict[str, Any] = {name: value for name, value in (
            ("sentiment", self.sentiment), ("urgency", self.urgency),
            ("anomaly_score", self.anomaly_score), ("anomaly_reason", self.anomaly_reason))
            if value is not None}
        if self.triage is not None:
            scores["category"] = self.triage.category
        return scores


#: A click's: it has none of its own (98% of a shop's events), so they all share this one.
NO_EVENT_SCORES = EventScores()


@dataclass
class Scored:
    """What the models said about a batch: the records to commit, and one update per event
    (of a customer whose profile exists) for the alert rules."""

    records: list[ScoreRecord] = field(default_factory=list)
    updates: list[CustomerUpdate] = field(default_factory=list)
    tickets: list[TicketRecord] = field(default_factory=list)
    #: Models whose error rose in this batch.
    drifts: list[DriftEvent] = field(default_factory=list)


class ModelStep:
    """Teach the bundle a batch's new events and score each of its customers once."""

    def __init__(self, *, bundle: ModelBundle, recommendation_refresh_s: float = 5.0,
                 lists_per_call: int = 25) -> None:
        self.bundle = bundle
        self.lists_per_call = lists_per_call
        self.lists = ListSchedule(recommendation_refresh_s)
        self.tenants_seen: set[str] = set()
        # The recommender's work of the batches scored since it was last taken, in order.
        self._interactions: list[Interaction] = []
        # Visitors merged into their customers since then, for the recommender to forget.
        self._merged_visitors: list[CustomerKey] = []
        #: The latest closed buckets of each forecast series, beside what was forecast.
        self.insights = Insights(bundle)

    def learn_and_score(self, events: Sequence[ModelEvent], customers: Mapping[CustomerKey,
                        Customer], clv_rankings: Mapping[str, RankingSketch],
                        watermark_ms: int | None) -> Scored:
        """Learn from the new ``events`` (in event-time order) and score each customer they
        touched once, from ``customers`` (as the batch left them) at ``watermark_ms``."""
        bundle = self.bundle
        present = [e for e in events if e.customer in customers]
        self.tenants_seen.update(tenant for tenant, _ in customers)
        learnt_before = len(self._interactions)
        per_event = [self._learn(e, customers[e.customer]) if e.new
                     else self._event_scores(e.event, customers[e.customer])
                     for e in present]
        self._observe_activity(present, customers)
        if watermark_ms is not None:
            bundle.churn.advance_watermark(watermark_ms)
            bundle.clv.advance_watermark(watermark_ms)
            self.insights.advance_watermark(watermark_ms)
        self.insights.watch_label_errors()
        touched = {e.customer: customers[e.customer] for e in present}
        interacted = {(i.tenant, i.customer_id) for i in self._interactions[learnt_before:]}
        self.lists.note((key, (customer.bought, customer.profile["recent_products"]),
                         key in interacted) for key, customer in touched.items())
        scored = Scored(tickets=ticket_records(
            (e.customer, e.event, x.triage, x.urgency, x.sentiment)
            for e, x in zip(present, per_event, strict=True)
            if x.triage is not None and isinstance(e.event, TicketEvent)))
        scores = self._score_customers(touched, present, per_event, watermark_ms,
                                       clv_rankings, scored.records)
        # A customer is scored once per batch, so the rules see their scoring once: at their
        # first event of the batch. Their later events read "previous segment = current" (no
        # move) and no churn probability (the churn rule's streak counts scorings: three
        # clicks of one batch are one score, not three). Each of the two is one dict, shared
        # by the customer's events without scores of their own (never changed).
        later_scores: dict[CustomerKey, dict[str, Any]] = {}
        for model_event, extra in zip(present, per_event, strict=True):
            key = model_event.customer
            customer = touched[key]
            if (base := later_scores.get(key)) is None:
                base = scores.get(key, {})
                later_scores[key] = {**base, "previous_segment": base.get("segment"),
                                     "previous_segment_label": base.get("segment_label"),
                                     "churn_probability": None}
            own = base if extra is NO_EVENT_SCORES else {**base, **extra.as_scores()}
            scored.updates.append(CustomerUpdate(
                tenant=model_event.customer[0], customer_id=model_event.customer[1],
                event=model_event.event, features=customer.profile, scores=own,
                marketing_consent=customer.marketing_consent,
                partition=model_event.partition))
        scored.drifts = self.insights.take_drifts()
        return scored

    def _event_scores(self, event: AnyEvent, customer: Customer) -> EventScores:
        """The event's own scores (a purchase's anomaly, a ticket's sentiment and urgency),
        learning nothing. A redelivered trigger is judged on these again (a kind ticket
        stays kind), not on the customer's, which may include later events by now."""
        if isinstance(event, PurchaseEvent):
            history = [total for order_id, total in customer.order_totals
                       if order_id != event.order_id]
            anomaly = self.bundle.anomaly.score(event.total, event.items_bought, history)
            return EventScores(anomaly_score=anomaly.score, anomaly_reason=anomaly.reason)
        if isinstance(event, TicketEvent):
            text = _ticket_text(event)
            if text:
                sentiment = self.bundle.sentiment.score(text)
                return EventScores(sentiment=sentiment.sentiment, urgency=sentiment.urgency,
                                   triage=self.bundle.triage.classify(text))
            if event.csat is not None:
                return EventScores(sentiment=(event.csat - 3) / 2)
        return NO_EVENT_SCORES

    def _learn(self, model_event: ModelEvent, customer: Customer) -> EventScores:
        """:meth:`_event_scores`, then learn from the event (the models first scored it as
        unseen, as progressive validation wants)."""
        event = model_event.event
        tenant, profile_id = model_event.customer
        scores = self._event_scores(event, customer)
        bundle, recent = self.bundle, customer.profile["recent_products"]
        at_ms = event.occurred_at_ms
        if isinstance(event, PurchaseEvent):
            bundle.anomaly.learn(event.total, event.items_bought)
            # The profile already holds this order: what the list served before it excluded
            # was the bought set without this order's products.
            bought_before = customer.bought - {item.product_id for item in event.items}
            self._interactions.append(Interaction(
                tenant, profile_id, tuple(item.product_id for item in event.items),
                "purchase", at_ms, recent, bought_before))
            self.insights.observe_purchase(tenant, event)
        elif isinstance(event, ClickEvent):
            kind = _INTERACTIONS.get(event.kind)
            if kind and event.product_id:
                self._interactions.append(Interaction(
                    tenant, profile_id, (event.product_id,), kind, at_ms, recent))
        elif text := _ticket_text(event):
            self.insights.learn_ticket(event, text, scores.sentiment)
        return scores

    def _observe_activity(self, events: Sequence[ModelEvent],
                          customers: Mapping[CustomerKey, Customer]) -> None:
        """One activity snapshot per customer per batch, at their latest new event.

        A session is a burst of clicks, and activity within a day replaces the pending
        snapshot anyway, so observing each click would cost much and teach nothing more.
        """
        latest: dict[CustomerKey, int] = {}
        orders: dict[CustomerKey, tuple[int, float]] = {}
        for model_event in events:
            key, event = model_event.customer, model_event.event
            if not model_event.new or not is_customer(key[1]):
                continue
            latest[key] = max(latest.get(key, 0), event.occurred_at_ms)
            if isinstance(event, PurchaseEvent):
                count, spend = orders.get(key, (0, 0.0))
                orders[key] = (count + 1, spend + event.total)
        for key, at_ms in sorted(latest.items(), key=lambda item: item[1]):
            profile = customers[key].profile
            count, spend = orders.get(key, (0, 0.0))
            self.bundle.churn.observe_activity(key[1], profile, at_ms)
            self.bundle.clv.observe_activity(key[1], profile, at_ms, purchases=count,
                                             spend=spend)

    def _score_customers(
        self, customers: Mapping[CustomerKey, Customer], events: Sequence[ModelEvent],
        per_event: list[EventScores], watermark_ms: int | None,
        clv_rankings: Mapping[str, RankingSketch], records: list[ScoreRecord],
    ) -> dict[CustomerKey, dict[str, Any]]:
        """Each customer of the batch learnt into their segments and scored once: their
        records appended to ``records``, and the scores the alert rules read answered."""
        bundle = self.bundle
        ticket_sentiment: dict[CustomerKey, float] = {}
        last_anomaly: dict[CustomerKey, float] = {}
        # The partition a customer's own events arrive on (keyed by customer id) holds them
        # in its scoring index; a visitor's partition does not.
        owner_partition: dict[CustomerKey, int] = {}
        for model_event, extra in zip(events, per_event, strict=True):
            key = model_event.customer
            if model_event.event.customer_id == key[1]:
                owner_partition[key] = model_event.partition
            if not model_event.new:
                continue  # it was folded into the customer's scores when it was new
            if extra.sentiment is not None:
                ticket_sentiment[key] = extra.sentiment
            if extra.anomaly_score is not None:
                last_anomaly[key] = extra.anomaly_score
        scored = {key: customer for key, customer in customers.items() if is_customer(key[1])}
        # The segments learn the whole batch first: every score of the batch then comes from
        # the same models, whose version the records carry.
        for (tenant, customer_id), customer in scored.items():
            bundle.segments.learn(tenant, customer_id, behaviour_vector(customer.profile))
        versions = bundle.model_versions()
        model_version = bundle.scores_version
        statuses = model_statuses(bundle)
        results: dict[CustomerKey, dict[str, Any]] = {}
        for key, customer in scored.items():
            tenant, customer_id = key
            profile = customer.profile
            scores = score_customer(bundle, tenant, profile,
                                    scoring_time(profile, watermark_ms), statuses)
            sentiment = profile.get("sentiment")
            if key in ticket_sentiment:  # an exponential average over the customer's tickets
                fresh = ticket_sentiment[key]
                sentiment = fresh if sentiment is None else 0.5 * sentiment + 0.5 * fresh
            previous = customer.previous_segment
            records.append(score_record(
                tenant, customer_id, scores, previous_segment=previous,
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
            ranking = clv_rankings.get(tenant)
            if scores.clv is not None and ranking is not None:
                results[key]["clv_percentile"], results[key]["clv_population"] = (
                    ranking.percentile(scores.clv, previous=customer.previous_clv))
        return results

    @property
    def lists_due(self) -> int:
        """Customers waiting for a fresh recommendation list."""
        return len(self.lists)

    def take_recommendation_work(self, lists: int | None = None) -> RecommendationWork:
        """The recommender's share of the batches scored since the last call: their
        interactions in order, and the first ``lists`` customers due for a fresh list (all
        when None; at most one list per ``recommendation_refresh_s`` each)."""
        interactions, self._interactions = self._interactions, []
        merged, self._merged_visitors = self._merged_visitors, []
        return RecommendationWork(interactions=interactions, due=self.lists.take(lists),
                                  erased=merged)

    def lists_in_worker(self) -> dict[CustomerKey, bytes]:
        """The recommender's work done in the worker (no recommender process, see
        :mod:`agents.recommending`): learn the interactions and list the first
        ``lists_per_call`` customers due, for the caller to write.

        Listing is most of the recommender's cost and nothing waits on it, so under load it
        is spread over the following calls: lists get a little older instead of every batch
        (and every alert behind it) getting slower. The worker also calls this on a timer,
        so lists still due when traffic stops are written all the same.
        """
        return apply_work(self.bundle.recommender,
                          self.take_recommendation_work(self.lists_per_call))

    def segment_summaries(self, tenants: set[str] | None = None
                          ) -> dict[str, list[tuple[int, str, dict[str, float]]]]:
        """Each tenant's segments as (id, label, centroid), for the API."""
        return {tenant: [(s.segment, s.label, s.centroid)
                         for s in self.bundle.segments.of(tenant).summaries()]
                for tenant in (self.tenants_seen if tenants is None else tenants)}

    def forget_visitors(self, visitors: Sequence[CustomerKey]) -> None:
        """Visitors merged into their customers (their events now land on the customer):
        no list is due for them any more, and the recommender forgets the rows it kept
        under their ids, with its next work. What they taught it of the products stays.
        Kept, those rows would grow with every visitor who ever logged in."""
        for key in visitors:
            self.lists.forget(key)
        self._merged_visitors.extend(visitors)

    def forget(self, tenant: str, customer_id: str) -> None:
        """Erasure: drop what the models keep of the customer (the store erased the rest)."""
        self._interactions = [i for i in self._interactions
                              if (i.tenant, i.customer_id) != (tenant, customer_id)]
        self.lists.forget((tenant, customer_id))
        self.bundle.segments.forget(tenant, customer_id)
        self.bundle.churn.forget(customer_id)
        self.bundle.clv.forget(customer_id)
        self.bundle.recommender.forget(customer_id)
