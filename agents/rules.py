"""The batch's rules step: the alert rules decide, in memory, from what the batch read.

Per customer, :class:`~feature_store.rule_state.CustomerAlertState` holds what
:mod:`agents.alert_rules` remembers (K-consecutive counters, hysteresis switches, the last
alert per kind with its id, the latest consent, the open cart); the store reads it with the
batch's customers and writes it back when the batch commits. Open carts are also timers
(:class:`~feature_store.batch.CartTimer`, per clicks partition) that watermarks fire: the
store reads those due by the batch's watermarks in the round trip that applies the batch,
and the rules fire them after the batch's own updates (a purchase in the same batch closes
the cart first). A cart this batch opened and its watermark already passed fires too, and
a due cart is judged before a later event of its customer dated past its deadline (a batch
that spans days of event time, see :meth:`AlertRules.decide`).

Crash safety (see ``agents/batch.py``): the states of the customers whose alerts go out are
saved before the alerts are published, with the timers of the carts the batch opened for
them, so a redelivered trigger is recognised (``seen``) and repeats its stored alert, same
id, same content, and a fired cart's timer, still there after a crash, repeats its alert
too; a cart added and fired in one batch has no timer, and its redelivered add-to-cart
repeats it. (An event the shop sent twice never gets here: the worker hands the rules only
redelivered duplicates.)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Counter as PrometheusCounter

from agents import alert_reasons
from agents.alert_config import AlertConfig, AlertConfigWatcher
from agents.alert_rules import (
    CustomerUpdate,
    Decision,
    Outcome,
    evaluate_update,
    fire_cart,
)
from feature_store import AppliedBatch, CartSweep, CartTimer, CustomerKey
from feature_store.rule_state import CustomerAlertState, OpenCart
from online_models import DriftEvent
from schemas.records import Alert, AlertKind, alert_id_for

log = logging.getLogger(__name__)

ALERTS_SUPPRESSED = PrometheusCounter(
    "crm_alerts_suppressed", "Alerts a rule wanted but consent or a cooldown held back",
    ["kind", "reason"])

Partition = tuple[str, int]


@dataclass
class Decided:
    """What the rules decided for a batch.

    ``alerts`` go out (each id once, in decision order); ``repeats`` are the ids among them
    that only repeat what a trigger fired before (a redelivery). ``states`` are the rule
    states to commit, ``alerting`` those of the customers whose alerts go out (saved before
    publishing). ``suppressed`` counts, per kind, the alerts consent held back.
    """

    alerts: list[Alert] = field(default_factory=list)
    repeats: set[str] = field(default_factory=set)
    states: dict[CustomerKey, CustomerAlertState] = field(default_factory=dict)
    alerting: dict[CustomerKey, CustomerAlertState] = field(default_factory=dict)
    timers_opened: list[CartTimer] = field(default_factory=list)
    timers_closed: list[CartTimer] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)

    def alerting_timers(self) -> list[CartTimer]:
        """The cart timers this batch opened for the customers in :attr:`alerting`: saved
        with their states. A retry of the batch (after the broker did not take its alerts,
        or a crash before the commit) reads the open cart back from the saved state and
        opens no timer for it; without the timer the cart would never fire."""
        return [timer for timer in self.timers_opened
                if (timer.tenant, timer.customer_id) in self.alerting]


class AlertRules:
    """The alert rules with their configuration (a file, reloaded when it changes)."""

    def __init__(self, *, config: AlertConfig | AlertConfigWatcher, clicks_topic: str,
                 purchases_topic: str) -> None:
        self._config = config
        self.clicks = clicks_topic
        self.purchases = purchases_topic
        #: Event time of each model's last drift alert (its cooldown; saved with the alert,
        #: taken up by the next worker: see :meth:`resume_drift_cooldowns`).
        self._drift_alerted_at: dict[str, int] = {}

    @property
    def config(self) -> AlertConfig:
        config = self._config
        return config.current() if isinstance(config, AlertConfigWatcher) else config

    def cart_sweep(self, watermarks: Mapping[Partition, int]) -> CartSweep:
        """What the store reads for the carts of the partitions a batch advanced: the clicks
        partition's timers due by the higher of the two watermarks (the effective one is
        never higher), and the recorded watermarks of both topics."""
        marks = {(topic, partition): mark for (topic, partition), mark in watermarks.items()
                 if topic in (self.clicks, self.purchases)}
        partitions = sorted({partition for _, partition in marks})
        return CartSweep(
            due_by={(self.clicks, p): max(mark for (_, q), mark in marks.items() if q == p)
                    for p in partitions},
            partitions=[(topic, p) for p in partitions for topic in (self.clicks,
                                                                      self.purchases)])

    def decide(self, updates: Sequence[CustomerUpdate], applied: AppliedBatch,
               watermarks: Mapping[Partition, int], *, lateness_ms: int,
               now: datetime | None = None) -> Decided:
        """Run the rules over the batch's updates (in event-time order), then fire the carts
        due by the batch's ``watermarks``: those the store read and those the batch opened.

        A batch can span days of event time (the backlog after an outage, a replay). A
        customer's open cart that is due by the batch's watermark is judged before the first
        later event of theirs dated past its deadline (by ``lateness_ms``, the allowed
        lateness: that event alone moved the watermark that far). So a later add-to-cart or
        purchase does not replace or close a cart abandoned before it, as it would not have
        in smaller batches, where the cart had fired by then.
        """
        config, now = self.config, now or datetime.now(UTC)
        effective = self._effective_watermarks(watermarks, applied, config)
        decided = Decided()
        decisions: list[tuple[CustomerKey, Decision]] = []
        states = decided.states
        carts_before: dict[CustomerKey, OpenCart | None] = {}
        for update in updates:
            key = (update.tenant, update.customer_id)
            if not _is_customer(update.customer_id) or key not in applied.customers:
                continue
            if key not in states:
                states[key] = applied.customers[key].rule_state
                carts_before[key] = states[key].cart
            cart = states[key].cart
            if cart is not None:
                passed = min(effective.get(cart.partition, -1),
                             update.event.occurred_at_ms - lateness_ms)
                if cart.deadline_ms <= passed:
                    decisions += self._fire_cart(self._timer(key, cart), applied, decided,
                                                 passed, config, now, mid_batch=True)
            decisions += [(key, d) for d in evaluate_update(update, states[key], config,
                                                            now=now)]
        for key, state in states.items():
            before, after = carts_before[key], state.cart
            if before != after:
                if before is not None:
                    decided.timers_closed.append(self._timer(key, before))
                if after is not None:
                    decided.timers_opened.append(self._timer(key, after))
        decisions += self._fire_due_carts(applied, effective, decided, config, now)
        self._tally(decisions, decided)
        return decided

    def drift_alerts(self, drifts: Sequence[DriftEvent], tenants: Sequence[str], *,
                     model_version: str, now: datetime | None = None) -> list[Alert]:
        """A ``model_drift`` alert per drift and tenant (the models are shared by every
        tenant the worker serves), at most one per model within the rule's cooldown."""
        rule = self.config.model_drift
        if not rule.enabled:
            return []
        now = now or datetime.now(UTC)
        alerts = []
        for found in drifts:
            last = self._drift_alerted_at.get(found.model)
            if last is not None and found.at_ms - last < rule.cooldown_ms:
                continue
            self._drift_alerted_at[found.model] = found.at_ms
            reason = alert_reasons.model_drift_reason(
                model=found.model, error_before=found.error_before,
                error_after=found.error_after, examples=found.examples)
            triggered_by = f"{found.model}@{found.at_ms}"
            alerts += [Alert(
                alert_id=alert_id_for(tenant=tenant, customer_id="", kind="model_drift",
                                      triggered_by=triggered_by),
                kind=AlertKind.MODEL_DRIFT, customer_id="", tenant=tenant,
                score=round(found.error_after, 6), threshold=round(found.error_before, 6),
                reason=reason, triggered_by=triggered_by,
                occurred_at=datetime.fromtimestamp(found.at_ms / 1000, tz=UTC),
                emitted_at=now, model_version=model_version) for tenant in sorted(tenants)]
        return alerts

    def drift_alerted_at(self) -> dict[str, int]:
        """Model -> event time (ms) of its last drift alert: what the cooldowns count from."""
        return dict(self._drift_alerted_at)

    def resume_drift_cooldowns(self, alerted_at: Mapping[str, int]) -> None:
        """Count the cooldowns from the drift alerts of the workers before this one (a model
        restored from a checkpoint learns the same events again and may find the same drift:
        without this, a restart alerted it twice)."""
        for model, at_ms in alerted_at.items():
            self._drift_alerted_at[model] = max(at_ms, self._drift_alerted_at.get(model, at_ms))

    def _timer(self, key: CustomerKey, cart: OpenCart) -> CartTimer:
        return CartTimer(self.clicks, cart.partition, key[0], key[1], cart.event_id,
                         cart.deadline_ms)

    def _effective_watermarks(self, watermarks: Mapping[Partition, int],
                              applied: AppliedBatch, config: AlertConfig) -> dict[int, int]:
        """How far in event time the batch may judge the carts of each partition it moved."""
        return {partition: self._effective_watermark(
            partition, watermarks, applied.watermarks,
            wait_for_purchases=config.cart_abandonment.wait_for_purchases)
            for (topic, partition) in watermarks if topic in (self.clicks, self.purchases)}

    def _fire_due_carts(self, applied: AppliedBatch, effective: Mapping[int, int],
                        decided: Decided, config: AlertConfig, now: datetime
                        ) -> list[tuple[CustomerKey, Decision]]:
        """Fire the carts whose deadline the ``effective`` watermark of their partition
        passed; a cart found moot (bought since, replaced, erased) just loses its timer."""
        due = dict.fromkeys(timer for timer in applied.due_carts
                            if timer.deadline_ms <= effective.get(timer.partition, -1))
        due.update(dict.fromkeys(timer for timer in decided.timers_opened
                                 if timer.deadline_ms <= effective.get(timer.partition, -1)))
        decisions: list[tuple[CustomerKey, Decision]] = []
        for timer in due:
            decisions += self._fire_cart(timer, applied, decided, effective[timer.partition],
                                         config, now)
            if timer in decided.timers_opened:
                decided.timers_opened.remove(timer)  # opened and fired in one batch
            else:
                decided.timers_closed.append(timer)
        for key in [key for key in decided.states if key not in applied.customers]:
            del decided.states[key]  # an erased customer's cart: no state to write back
        return decisions

    def _fire_cart(self, timer: CartTimer, applied: AppliedBatch, decided: Decided,
                   watermark_ms: int, config: AlertConfig, now: datetime, *,
                   mid_batch: bool = False) -> list[tuple[CustomerKey, Decision]]:
        """Decide about one due cart. ``mid_batch``: judged ahead of a later update of the
        customer; the purchases before that update closed the cart already (in event-time
        order), and the profile's last order may be a later one, so it is not asked."""
        key = (timer.tenant, timer.customer_id)
        customer = applied.customers.get(key)
        if key not in decided.states:
            decided.states[key] = (customer.rule_state if customer is not None
                                   else CustomerAlertState())
        profile = customer.profile if customer is not None else {}
        decision = fire_cart(
            tenant=timer.tenant, customer_id=timer.customer_id, event_id=timer.event_id,
            state=decided.states[key], config=config, watermark_ms=watermark_ms,
            last_order_at_ms=None if mid_batch else profile.get("last_order_at"),
            cart_adds=int(profile.get("cart_adds") or 0),
            profile_exists=customer is not None, now=now)
        return [(key, decision)] if decision is not None else []

    def _effective_watermark(self, partition: int, watermarks: Mapping[Partition, int],
                             stored: Mapping[Partition, int], *,
                             wait_for_purchases: bool) -> int:
        """How far in event time the carts of ``partition`` may be judged.

        A purchases watermark alone never outruns the clicks recorded for the partition; a
        clicks watermark waits for the purchases one when ``wait_for_purchases``. A watermark
        never recorded does not hold the other back.
        """
        clicks = watermarks.get((self.clicks, partition))
        purchases = watermarks.get((self.purchases, partition))
        candidates = []
        if clicks is not None:
            other = purchases if purchases is not None else stored.get(
                (self.purchases, partition))
            candidates.append(min(clicks, other) if wait_for_purchases and other is not None
                              else clicks)
        if purchases is not None:
            other = clicks if clicks is not None else stored.get((self.clicks, partition))
            candidates.append(min(purchases, other) if other is not None else purchases)
        return max(candidates)

    @staticmethod
    def _tally(decisions: Sequence[tuple[CustomerKey, Decision]], decided: Decided) -> None:
        """The alerts to send, in decision order, each id once; those only repeated; the
        states of their customers; and what consent and cooldowns held back."""
        emitted = {d.alert.alert_id for _, d in decisions if d.outcome is Outcome.EMIT}
        decided.repeats = {d.alert.alert_id for _, d in decisions
                           if d.outcome is Outcome.REPEAT and d.alert.alert_id not in emitted}
        decided.alerts = list({d.alert.alert_id: d.alert for _, d in decisions
                               if d.publish}.values())
        for key, decision in decisions:
            kind = decision.alert.kind.value
            if decision.publish:
                decided.alerting[key] = decided.states[key]
            elif decision.outcome is Outcome.SUPPRESSED_CONSENT:
                decided.suppressed[kind] += 1
                ALERTS_SUPPRESSED.labels(kind=kind, reason="consent").inc()
            elif decision.outcome is Outcome.SUPPRESSED_COOLDOWN:
                ALERTS_SUPPRESSED.labels(kind=kind, reason="cooldown").inc()


def _is_customer(profile_id: str) -> bool:
    """Profiles of anonymous visitors: no one to send marketing to, so no alerts."""
    return not profile_id.startswith("anon:")
