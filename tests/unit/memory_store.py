"""An in-memory double of the feature store's batch methods, for unit tests of the batch.

It keeps what the batch relies on (each event once by id, the customers read back after
their events, rule state, cart timers, progress, the feed once per id) with a few plain
features; ``tests/integration`` hold the real store to the full feature set.

Nothing here is a test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feature_store import (
    AppliedBatch,
    AppliedEvent,
    CartSweep,
    CartTimer,
    Commit,
    Customer,
    CustomerKey,
    Position,
    Progress,
)
from feature_store.batch import check_marks
from feature_store.feed import KEPT_UNTIL_FED, CarriedOver
from feature_store.ranking import RankingSketch
from feature_store.rule_state import CustomerAlertState
from feature_store.scores import ScoreRecord
from schemas.events import AnyEvent, ClickEvent, ClickKind, PurchaseEvent
from schemas.records import Alert

Partition = tuple[str, int]


@dataclass
class MemoryStore:
    """The store's batch methods over dicts; ``fail_commits`` makes the next commits raise
    (a Redis outage) before anything is written."""

    events: dict[CustomerKey, dict[str, AnyEvent]] = field(
        default_factory=lambda: defaultdict(dict))
    rule_states: dict[CustomerKey, bytes] = field(default_factory=dict)
    timers: dict[Partition, dict[tuple[str, str, str], int]] = field(
        default_factory=lambda: defaultdict(dict))
    scores: dict[CustomerKey, ScoreRecord] = field(default_factory=dict)
    feed: dict[str, Alert] = field(default_factory=dict)
    unsent: dict[str, Alert] = field(default_factory=dict)
    drift_alerted_at: dict[str, int] = field(default_factory=dict)
    progress: dict[Partition, Progress] = field(default_factory=dict)
    watermarks: dict[Partition, int] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    commits: list[Commit] = field(default_factory=list)
    fail_commits: int = 0

    async def positions(self, partitions: Iterable[Partition]) -> dict[Partition, Position]:
        return {key: Position(self.progress.get(key, Progress()), self.watermarks.get(key))
                for key in partitions}

    async def apply(self, events: Sequence[AnyEvent], *, started: Mapping[Partition, int],
                    carts: CartSweep, known_started: Mapping[Partition, int] | None = None
                    ) -> AppliedBatch:
        if not events:
            started = {}  # as Redis: nothing of this batch goes to be applied
        if known_started is not None:
            check_marks({key: self.progress.get(key, Progress()).started for key in started},
                        known_started)
        for key, offset in started.items():
            before = self.progress.get(key, Progress())
            self.progress[key] = Progress(before.done, max(before.started, offset))
        applied = AppliedBatch(events=[], customers={})
        for event in events:
            key = (event.tenant, event.customer_id or f"anon:{event.anonymous_id}")
            seen = self.events[key]
            applied.events.append(AppliedEvent(
                "duplicate" if event.event_id in seen else "ok", key[1]))
            seen.setdefault(event.event_id, event)
        for key in {(e.tenant, e.customer_id or f"anon:{e.anonymous_id}") for e in events}:
            applied.customers[key] = self.customer(key)
        for key, due_by in carts.due_by.items():
            applied.due_carts += [CartTimer(*key, *member, deadline)
                                  for member, deadline in self.timers[key].items()
                                  if deadline <= due_by]
        for timer in applied.due_carts:
            owner = (timer.tenant, timer.customer_id)
            if owner in self.events:
                applied.customers[owner] = self.customer(owner)
        applied.watermarks = {key: self.watermarks[key] for key in carts.partitions
                              if key in self.watermarks}
        applied.clv_rankings = {tenant: RankingSketch(0, (), ()) for tenant, _ in
                                applied.customers}
        return applied

    def customer(self, key: CustomerKey) -> Customer:
        """A few features of the customer's events, as the models read them."""
        events = sorted(self.events[key].values(), key=lambda e: e.occurred_at_ms)
        orders = [e for e in events if isinstance(e, PurchaseEvent)]
        views = [e for e in events if isinstance(e, ClickEvent)
                 and e.kind in (ClickKind.PAGE_VIEW, ClickKind.PRODUCT_VIEW)]
        revenue = sum(order.total for order in orders)
        consent = [e.marketing_consent for e in events if e.marketing_consent is not None]
        profile: dict[str, Any] = {
            "orders": len(orders), "revenue": revenue,
            "avg_order_value": revenue / len(orders) if orders else 0.0,
            "views": len(views), "product_views": 0, "items_bought": 0, "sessions": 1,
            "active_days": 1, "searches": 0, "tickets_total": 0, "open_tickets": 0,
            "checkouts_started": 0, "cart_removes": 0,
            "cart_adds": sum(1 for e in events if isinstance(e, ClickEvent)
                             and e.kind is ClickKind.ADD_TO_CART),
            "first_seen_at": events[0].occurred_at_ms, "last_seen_at": events[-1].occurred_at_ms,
            "last_order_at": orders[-1].occurred_at_ms if orders else None,
            "sentiment": None, "category_affinity": {}, "recent_products": [],
        }
        stored = self.scores.get(key)
        return Customer(
            profile=profile,
            bought={item.product_id for order in orders for item in order.items},
            order_totals=[(order.order_id, order.total) for order in orders],
            previous_segment=stored.segment if stored else None,
            previous_clv=stored.clv if stored else None,
            marketing_consent=consent[-1] if consent else None,
            rule_state=CustomerAlertState.from_json(self.rule_states.get(key)))

    async def save_rule_states(self, states: Mapping[CustomerKey, CustomerAlertState], *,
                               timers_opened: Sequence[CartTimer] = (),
                               alerts: Sequence[Alert] = (),
                               drift_alerted_at: Mapping[str, int] | None = None) -> None:
        self._open(timers_opened)
        self.rule_states.update({key: state.to_json() for key, state in states.items()})
        unsent = {a.alert_id: a for a in alerts if a.kind in KEPT_UNTIL_FED}
        if unsent:
            self.unsent.update(unsent)
            self.drift_alerted_at.update(drift_alerted_at or {})

    async def carried_over(self) -> CarriedOver:
        return CarriedOver(sorted(self.unsent.values(), key=lambda alert: alert.alert_id),
                           dict(self.drift_alerted_at))

    def _open(self, timers: Sequence[CartTimer]) -> None:
        for timer in timers:
            self.timers[(timer.topic, timer.partition)][
                (timer.tenant, timer.customer_id, timer.event_id)] = timer.deadline_ms

    async def commit(self, commit: Commit) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise ConnectionError("Redis went away")
        self.commits.append(commit)
        self.scores.update({(r.tenant, r.customer_id): r for r in commit.scores})
        await self.save_rule_states(commit.rule_states)
        for timer in commit.timers_closed:
            self.timers[(timer.topic, timer.partition)].pop(
                (timer.tenant, timer.customer_id, timer.event_id), None)
        self._open(commit.timers_opened)
        for alert in commit.feed:
            self.feed.setdefault(alert.alert_id, alert)
            self.unsent.pop(alert.alert_id, None)
        for key, offset in commit.progress.items():
            before = self.progress.get(key, Progress())
            self.progress[key] = Progress(max(before.done, offset), max(before.started, offset))
        self.watermarks.update(commit.watermarks)
        for outcome, count in commit.outcomes.items():
            self.outcomes[outcome] += count
