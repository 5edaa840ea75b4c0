"""Independent shop families with planted truth, for judging what the API serves.

Our models are tuned while watching one simulator; a score is only worth something on shops
nobody tuned them to. These generators share no code or wording with that simulator. Each
family (see :mod:`.family_specs`) plants one hard question and hides the answer:

* ``abrupt_stop``: 40% of every group stops dead at mid-period. Churn truth is obvious in
  hindsight; three groups (frequent small baskets, rare big spenders, browsers) for segments.
* ``gradual_fade``: churners' visit rate decays over 3-6 weeks before they stop, at times
  spread over the middle of the period; a support-heavy group writes many tickets.
* ``seasonal``: burst shoppers are silent for 6-10 weeks between bursts and come back;
  regular customers beside them. Churn truth is *stopped for good*, never "silent now".
* ``big_spenders``: rare, large orders whose size differs a lot between customers, beside
  small frequent ones; the CLV test.
* ``browsers``: most customers view, search and abandon carts; churn is to stop visiting.

Truth, per customer (:class:`CustomerTruth`): the planted group (for segment ARI); whether
they churned and the moment of their last event (nothing of theirs follows it; churners
stop at least three weeks before the end, or 30% of a period shorter than 70 days); their
favourite category (80% of their product views) and favourite products (a taste cluster
shared with others, so a collaborative recommender can beat popularity); their planted
rates. Per ticket (:attr:`Shop.ticket_truth`): +1 clearly
positive (CSAT 4-5), -1 clearly negative (CSAT 1-2), 0 neutral or mixed (CSAT 3).

Every event is a JSON-ready dict valid under :mod:`schemas.events`. The same arguments give
the same events, byte for byte: each customer draws from their own seeded stream, and there
is no wall clock.

>>> from datetime import UTC, datetime
>>> shop = generate_shop("abrupt_stop", customers=20, days=60, seed=1,
...                      start=datetime(2025, 1, 1, tzinfo=UTC))
>>> shop.groups
('frequent small baskets', 'rare big spenders', 'browsers')
>>> shop.events[0]["occurred_at"] <= shop.events[-1]["occurred_at"]
True
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from load_tests.quality.family_catalogue import build_catalogue
from load_tests.quality.family_customers import DAY_MS, CustomerPlan, draw_plan, visit_times
from load_tests.quality.family_sessions import CustomerActivity, IdCounter, simulate_customer
from load_tests.quality.family_specs import FAMILIES, FamilySpec, GroupSpec

__all__ = ["FAMILIES", "CustomerTruth", "FamilySpec", "GroupSpec", "Shop", "generate_shop"]


@dataclass(frozen=True)
class CustomerTruth:
    customer_id: str
    #: Index into :attr:`Shop.groups`.
    group: int
    churned: bool
    #: For churners, the moment of their last event; ``None`` for everyone else.
    stopped_at_ms: int | None
    favourite_category: str
    favourite_products: tuple[str, ...]
    joined_at_ms: int
    last_event_ms: int
    #: Planted rates (the customer's own draws around their group's means). For a burst
    #: shopper, visits per week *inside* a burst.
    visits_per_week: float
    cart_rate: float
    order_rate: float
    orders_per_week: float
    mean_basket_value: float
    tickets_per_week: float
    #: Burst shoppers: days from one burst's start to the next's.
    burst_period_days: float | None
    #: Fading churners: when their visit rate began to decay.
    fade_started_at_ms: int | None
    marketing_consent: bool
    #: The cookie id their anonymous sessions carry before they log in.
    anonymous_id: str
    #: What happened, counted from the events.
    orders: int
    revenue: float


@dataclass(frozen=True)
class Shop:
    family: str
    seed: int
    tenant: str
    start_ms: int
    end_ms: int
    #: Every event, sorted by ``occurred_at`` (ties in generation order).
    events: list[dict[str, Any]]
    #: ``occurred_at`` of each event in epoch ms, parallel to :attr:`events`.
    event_ms: tuple[int, ...]
    truth: dict[str, CustomerTruth]
    groups: tuple[str, ...]
    #: ticket_id -> +1 (clearly positive), -1 (clearly negative), 0 (neutral or mixed).
    ticket_truth: dict[str, int]
    #: The products (each with a ``product_id`` and ``category``): a family's
    #: :class:`Catalogue`, or another shop's catalogue judged the same way.
    catalogue: Any

    def events_until(self, at_ms: int) -> list[dict[str, Any]]:
        """Events that occurred before ``at_ms`` (what a benchmark streams first)."""
        return self.events[: bisect.bisect_left(self.event_ms, at_ms)]

    def events_after(self, at_ms: int) -> list[dict[str, Any]]:
        """Events at or after ``at_ms`` (the holdout): with :meth:`events_until`, all of them."""
        return self.events[bisect.bisect_left(self.event_ms, at_ms):]

    @property
    def churn_share(self) -> float:
        return sum(t.churned for t in self.truth.values()) / max(1, len(self.truth))


def rfc3339(at_ms: int) -> str:
    """Epoch ms as RFC 3339 in UTC with milliseconds: ``2025-03-01T10:00:00.000Z``."""
    moment = datetime.fromtimestamp(at_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{at_ms % 1000:03d}Z"


def _truth(plan: CustomerPlan, activity: CustomerActivity) -> CustomerTruth:
    last_event_ms = max(at_ms for at_ms, _ in activity.events)
    return CustomerTruth(
        customer_id=plan.customer_id, group=plan.group, churned=plan.churned,
        stopped_at_ms=last_event_ms if plan.churned else None,
        favourite_category=plan.favourite_category,
        favourite_products=tuple(p.product_id for p in plan.favourites),
        joined_at_ms=plan.joined_ms, last_event_ms=last_event_ms,
        visits_per_week=plan.visits_per_week, cart_rate=plan.cart_rate,
        order_rate=plan.order_rate,
        orders_per_week=plan.visits_per_week * plan.cart_rate * plan.order_rate,
        mean_basket_value=plan.basket_value, tickets_per_week=plan.ticket_rate,
        burst_period_days=plan.burst_period_ms / DAY_MS if plan.burst_period_ms else None,
        fade_started_at_ms=plan.fade_start_ms, marketing_consent=plan.marketing_consent,
        anonymous_id=plan.device_id, orders=len(activity.orders),
        revenue=round(sum(o.total for o in activity.orders), 2),
    )


def generate_shop(family: str, *, customers: int, days: float, seed: int, start: datetime,
                  tenant: str = "default") -> Shop:
    """Generate one shop of ``family``: ``customers`` customers over ``days`` from ``start``."""
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    spec = FAMILIES[family]
    start_ms = round(start.timestamp() * 1000)
    end_ms = start_ms + round(days * DAY_MS)
    catalogue = build_catalogue(family, random.Random(f"families:{family}:{seed}:catalogue"))
    ids = IdCounter(family=family, seed=seed)
    raw: list[tuple[int, dict[str, Any]]] = []
    truth: dict[str, CustomerTruth] = {}
    ticket_truth: dict[str, int] = {}
    for index in range(customers):
        rng = random.Random(f"families:{family}:{seed}:customer:{index}")
        plan = draw_plan(spec, catalogue, rng, index=index,
                         customer_id=f"c-{family}-{seed}-{index + 1}",
                         start_ms=start_ms, end_ms=end_ms)
        activity = simulate_customer(plan, visit_times(plan, rng, end_ms), catalogue, rng, ids,
                                     end_ms=end_ms, tenant=tenant, currency=spec.currency)
        raw.extend(activity.events)
        truth[plan.customer_id] = _truth(plan, activity)
        ticket_truth.update(activity.tickets)
    raw.sort(key=lambda event: event[0])
    events = [{"event_id": f"e-{tenant}-{family}-{seed}-{n}", "occurred_at": rfc3339(at_ms),
               **body} for n, (at_ms, body) in enumerate(raw, start=1)]
    return Shop(family=family, seed=seed, tenant=tenant, start_ms=start_ms, end_ms=end_ms,
                events=events, event_ms=tuple(at_ms for at_ms, _ in raw), truth=truth,
                groups=tuple(g.name for g in spec.groups), ticket_truth=ticket_truth,
                catalogue=catalogue)
