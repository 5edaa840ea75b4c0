"""One customer's hidden plan: when they join, how they shop, whether and when they stop.

Everything a customer does follows from their plan and their own random stream, so adding a
customer or changing one never changes another. Visits are a Poisson process at the
customer's own rate, thinned by a daily rhythm (few visits at night) and by the family's
activity pattern: a fading churner's rate decays exponentially before the stop; a burst
shopper is active only inside periodic bursts. Nothing after a churner's stop is generated.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from load_tests.quality.family_catalogue import TASTE_CLUSTERS, Catalogue, Product
from load_tests.quality.family_specs import ChurnPattern, FamilySpec, GroupSpec

__all__ = ["DAY_MS", "HOUR_MS", "WEEK_MS", "CustomerPlan", "budget_fit", "draw_plan",
           "visit_times"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

#: Churners stop at least this long before the end: a silence shorter than that is not yet
#: knowable as churn, so it would be no fair test.
CHURN_MARGIN_MS = 21 * DAY_MS
#: Two visits closer than this are one session.
MIN_SESSION_GAP_MS = 30 * MINUTE_MS

#: Relative visit intensity by hour of day (UTC, the shop's time): quiet nights, busy evenings.
_HOURLY = (0.08, 0.05, 0.04, 0.04, 0.05, 0.1, 0.2, 0.35, 0.5, 0.6, 0.65, 0.7,
           0.75, 0.7, 0.65, 0.65, 0.7, 0.8, 0.9, 1.0, 1.0, 0.9, 0.6, 0.3)
_MEAN_HOURLY = sum(_HOURLY) / len(_HOURLY)


@dataclass(frozen=True)
class CustomerPlan:
    index: int
    customer_id: str
    group: int
    spec: GroupSpec
    joined_ms: int
    churned: bool
    #: Planned stop for churners: nothing at or after it.
    stop_ms: int | None
    #: When a fading churner's visit rate starts to decay, and its time constant.
    fade_start_ms: int | None
    fade_tau_ms: float | None
    burst_period_ms: int | None
    burst_length_ms: int | None
    visits_per_week: float
    views_per_session: float
    cart_rate: float
    order_rate: float
    basket_value: float
    ticket_rate: float
    favourite_category: str
    favourites: tuple[Product, ...]
    marketing_consent: bool
    #: The browser cookie an anonymous session carries before the customer logs in.
    device_id: str

    def activity(self, at_ms: int) -> float:
        """The planned share (0-1) of the customer's base visit rate at ``at_ms``."""
        if self.burst_period_ms is not None and self.burst_length_ms is not None:
            in_burst = (at_ms - self.joined_ms) % self.burst_period_ms < self.burst_length_ms
            return 1.0 if in_burst else 0.0
        if self.fade_start_ms is not None and self.fade_tau_ms and at_ms > self.fade_start_ms:
            return math.exp(-(at_ms - self.fade_start_ms) / self.fade_tau_ms)
        return 1.0


def _around(rng: random.Random, mean: float, sigma: float) -> float:
    """A lognormal draw whose expectation is ``mean``."""
    return mean * math.exp(rng.gauss(-sigma * sigma / 2, sigma))


def _share(rng: random.Random, mean: float) -> float:
    return min(0.97, _around(rng, mean, 0.3))


def _weighted_sample(rng: random.Random, products: list[Product], weights: list[float],
                     k: int) -> tuple[Product, ...]:
    chosen: list[Product] = []
    pool, pool_weights = list(products), list(weights)
    while pool and len(chosen) < k:
        i = rng.choices(range(len(pool)), weights=pool_weights)[0]
        chosen.append(pool.pop(i))
        pool_weights.pop(i)
    return tuple(chosen)


def budget_fit(price: float, budget: float, *, spread: float = 0.5) -> float:
    """How well a price suits a budget: 1 when equal, falling off on a log scale, never 0
    (people do buy outside their habits now and then)."""
    misfit = math.log(price / budget) / spread
    return math.exp(-misfit * misfit / 2) + 0.005


def _favourites(catalogue: Catalogue, rng: random.Random,
                line_budget: float) -> tuple[str, tuple[Product, ...]]:
    """A favourite category whose prices suit the customer's budget per order line, and 5-8
    favourite products from one of its taste clusters."""
    weights = [w * budget_fit(catalogue.typical_price[c], line_budget, spread=0.7)
               for c, w in zip(catalogue.categories, catalogue.category_weights, strict=True)]
    category = rng.choices(catalogue.categories, weights=weights)[0]
    cluster = rng.randrange(TASTE_CLUSTERS)
    candidates = [p for p in catalogue.by_category[category] if p.cluster == cluster]
    product_weights = [p.popularity * budget_fit(p.price, line_budget) for p in candidates]
    return category, _weighted_sample(rng, candidates, product_weights, rng.randint(5, 8))


def _stop_ms(spec: FamilySpec, rng: random.Random, joined_ms: int, start_ms: int,
             end_ms: int) -> int:
    span = end_ms - start_ms
    if spec.churn is ChurnPattern.MIDPOINT:
        return start_ms + span // 2 + int(rng.uniform(-0.5, 0.5) * DAY_MS)
    # Two weeks of ordinary life first, and for a fading churner the shortest fade after it.
    history_ms = 14 * DAY_MS + (int(spec.fade_weeks[0] * WEEK_MS)
                                if spec.churn is ChurnPattern.FADE else 0)
    latest = end_ms - min(CHURN_MARGIN_MS, int(0.3 * span))
    earliest = min(max(start_ms + int(0.3 * span), joined_ms + history_ms), latest)
    return int(rng.uniform(earliest, latest))


def draw_plan(spec: FamilySpec, catalogue: Catalogue, rng: random.Random, *, index: int,
              customer_id: str, start_ms: int, end_ms: int) -> CustomerPlan:
    """Draw one customer of ``spec``: group, rates around the group's, favourites, fate."""
    group = rng.choices(range(len(spec.groups)), weights=[g.share for g in spec.groups])[0]
    g = spec.groups[group]
    joined_ms = start_ms + int(rng.uniform(0, (end_ms - start_ms) / 3))
    churned = rng.random() < g.churn_share
    stop_ms = _stop_ms(spec, rng, joined_ms, start_ms, end_ms) if churned else None
    fade_start_ms = fade_tau_ms = None
    if stop_ms is not None and spec.churn is ChurnPattern.FADE:
        # A late joiner in a short period fades faster rather than before they joined.
        fade_ms = min(rng.uniform(*spec.fade_weeks) * WEEK_MS,
                      max(WEEK_MS, stop_ms - joined_ms - 14 * DAY_MS))
        # Three time constants: the rate is down to e**-3 (5%) when the customer stops.
        fade_start_ms, fade_tau_ms = int(stop_ms - fade_ms), fade_ms / 3
    burst_period_ms = burst_length_ms = None
    if g.bursts is not None:
        burst_period_ms = int(rng.uniform(*g.bursts.period_days) * DAY_MS)
        burst_length_ms = int(rng.uniform(*g.bursts.length_days) * DAY_MS)
    basket_value = _around(rng, g.basket_value, g.basket_spread)
    category, favourites = _favourites(catalogue, rng, basket_value / g.basket_lines)
    return CustomerPlan(
        index=index, customer_id=customer_id, group=group, spec=g, joined_ms=joined_ms,
        churned=churned, stop_ms=stop_ms, fade_start_ms=fade_start_ms, fade_tau_ms=fade_tau_ms,
        burst_period_ms=burst_period_ms, burst_length_ms=burst_length_ms,
        visits_per_week=_around(rng, g.visits_per_week, 0.4),
        views_per_session=_around(rng, g.views_per_session, 0.25),
        cart_rate=_share(rng, g.cart_rate), order_rate=_share(rng, g.order_rate),
        basket_value=basket_value,
        ticket_rate=_around(rng, g.ticket_rate, 0.5),
        favourite_category=category, favourites=favourites,
        marketing_consent=rng.random() < 0.65, device_id=f"anon-{rng.getrandbits(64):016x}",
    )


def visit_times(plan: CustomerPlan, rng: random.Random, end_ms: int) -> list[int]:
    """Session start times: the first at joining, then a thinned Poisson process."""
    limit = plan.stop_ms if plan.stop_ms is not None else end_ms
    candidates_per_ms = plan.visits_per_week / WEEK_MS / _MEAN_HOURLY
    times = [plan.joined_ms]
    at_ms = plan.joined_ms
    while True:
        at_ms += int(rng.expovariate(candidates_per_ms)) + 1
        if at_ms >= limit:
            return times
        keep = _HOURLY[(at_ms // HOUR_MS) % 24] * plan.activity(at_ms)
        if rng.random() < keep and at_ms - times[-1] >= MIN_SESSION_GAP_MS:
            times.append(at_ms)
