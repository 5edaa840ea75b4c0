"""The shop families: what each one tests, as planted behaviour groups and a churn pattern.

A family is a recipe, not data: :func:`load_tests.quality.families.generate_shop` turns it
into customers and events for any size, period and seed. Each group is a mean behaviour;
every customer draws their own rates around it (lognormal, mean preserving), so groups
overlap the way real customers do and still separate on average. Rates are per customer:

* ``visits_per_week``: sessions per week while active (inside a burst, for bursty groups);
* ``views_per_session``: product views per session;
* ``cart_rate``: share of sessions with at least one add to cart;
* ``order_rate``: share of those carts that end in an order (the cart-to-order ratio);
* ``basket_value``: mean spend per order, ``basket_spread`` how much it differs between
  customers (lognormal sigma), ``basket_lines`` mean distinct products per order (a customer's
  budget per line steers which categories and products they favour and cart);
* ``ticket_rate``: support tickets per week of activity;
* ``churn_share``: probability of stopping for good (when and how: the family's
  :class:`ChurnPattern`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FAMILIES", "Bursts", "ChurnPattern", "FamilySpec", "GroupSpec"]


class ChurnPattern(StrEnum):
    #: Churners stop dead at the middle of the period (within half a day of it).
    MIDPOINT = "midpoint"
    #: Churners' visit rate decays exponentially over 3-6 weeks, down to 5% when they stop;
    #: stop times spread over the middle of the period.
    FADE = "fade"
    #: Churners stop dead at a time spread over the middle of the period.
    ANYTIME = "anytime"


@dataclass(frozen=True)
class Bursts:
    """Shopping in bursts: active for ``length_days`` every ``period_days``, silent between."""

    period_days: tuple[float, float] = (60.0, 80.0)
    length_days: tuple[float, float] = (6.0, 12.0)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    share: float
    visits_per_week: float
    views_per_session: float
    cart_rate: float
    order_rate: float
    basket_value: float
    basket_spread: float = 0.35
    basket_lines: float = 1.5
    search_rate: float = 0.3
    ticket_rate: float = 0.04
    churn_share: float = 0.35
    bursts: Bursts | None = None


@dataclass(frozen=True)
class FamilySpec:
    name: str
    #: What a model must get right on this shop, in a sentence.
    purpose: str
    groups: tuple[GroupSpec, ...]
    churn: ChurnPattern
    #: How long a fading churner takes to fade (FADE only), in weeks.
    fade_weeks: tuple[float, float] = (3.0, 6.0)
    currency: str = "EUR"


_ABRUPT_STOP = FamilySpec(
    name="abrupt_stop",
    purpose="Churn that is obvious in hindsight: 40% of every group stops dead at mid-period;"
            " segments are three clearly different ways to shop.",
    churn=ChurnPattern.MIDPOINT,
    groups=(
        GroupSpec("frequent small baskets", share=0.45, visits_per_week=2.0,
                  views_per_session=3.0, cart_rate=0.6, order_rate=0.8, basket_value=28.0,
                  basket_lines=1.6, search_rate=0.2, churn_share=0.4),
        GroupSpec("rare big spenders", share=0.2, visits_per_week=0.5, views_per_session=5.5,
                  cart_rate=0.65, order_rate=0.7, basket_value=320.0, basket_spread=0.5,
                  basket_lines=2.5, search_rate=0.4, ticket_rate=0.06,
                  churn_share=0.4),
        GroupSpec("browsers", share=0.35, visits_per_week=1.3, views_per_session=5.5,
                  cart_rate=0.15, order_rate=0.08, basket_value=45.0, basket_lines=1.2,
                  search_rate=0.5, ticket_rate=0.02, churn_share=0.4),
    ),
)

_GRADUAL_FADE = FamilySpec(
    name="gradual_fade",
    purpose="Churn that announces itself: churners visit less and less for weeks before they"
            " stop, so a good churn score rises before the last visit.",
    churn=ChurnPattern.FADE,
    groups=(
        GroupSpec("loyal regulars", share=0.5, visits_per_week=1.6, views_per_session=3.5,
                  cart_rate=0.5, order_rate=0.75, basket_value=55.0, churn_share=0.3),
        GroupSpec("occasional buyers", share=0.3, visits_per_week=0.6, views_per_session=4.5,
                  cart_rate=0.5, order_rate=0.6, basket_value=110.0, basket_lines=2.0,
                  churn_share=0.35),
        GroupSpec("support-heavy", share=0.2, visits_per_week=1.0, views_per_session=3.5,
                  cart_rate=0.45, order_rate=0.7, basket_value=70.0, ticket_rate=0.25,
                  churn_share=0.45),
    ),
)

_SEASONAL = FamilySpec(
    name="seasonal",
    purpose="Silence is not churn: burst shoppers go quiet for 6-10 weeks between bursts and"
            " come back; only customers who stopped for good count as churned.",
    churn=ChurnPattern.ANYTIME,
    groups=(
        GroupSpec("seasonal bursts", share=0.45, visits_per_week=3.5, views_per_session=4.0,
                  cart_rate=0.6, order_rate=0.75, basket_value=90.0, basket_lines=2.0,
                  search_rate=0.4, churn_share=0.3, bursts=Bursts()),
        GroupSpec("regulars", share=0.55, visits_per_week=1.2, views_per_session=3.5,
                  cart_rate=0.5, order_rate=0.7, basket_value=50.0, churn_share=0.35),
    ),
)

_BIG_SPENDERS = FamilySpec(
    name="big_spenders",
    purpose="Value is concentrated: a few customers order rarely but big, and their spend"
            " differs a lot from one to the next; CLV must rank them, not average them.",
    churn=ChurnPattern.ANYTIME,
    groups=(
        GroupSpec("big spenders", share=0.3, visits_per_week=0.45, views_per_session=6.0,
                  cart_rate=0.55, order_rate=0.75, basket_value=450.0, basket_spread=0.8,
                  basket_lines=3.0, search_rate=0.4, ticket_rate=0.06,
                  churn_share=0.35),
        GroupSpec("small frequent buyers", share=0.7, visits_per_week=2.2,
                  views_per_session=2.5, cart_rate=0.6, order_rate=0.8, basket_value=25.0,
                  basket_spread=0.3, basket_lines=1.3, search_rate=0.2,
                  churn_share=0.35),
    ),
)

_BROWSERS = FamilySpec(
    name="browsers",
    purpose="Activity is not buying: most customers view, search and fill carts without"
            " ordering; churn means they stop visiting at all, not that they never bought.",
    churn=ChurnPattern.ANYTIME,
    groups=(
        GroupSpec("window shoppers", share=0.5, visits_per_week=1.4, views_per_session=5.5,
                  cart_rate=0.2, order_rate=0.04, basket_value=40.0, search_rate=0.6,
                  ticket_rate=0.02, churn_share=0.35),
        GroupSpec("cart abandoners", share=0.2, visits_per_week=1.1, views_per_session=4.5,
                  cart_rate=0.75, order_rate=0.1, basket_value=60.0, search_rate=0.4,
                  churn_share=0.4),
        GroupSpec("buyers", share=0.3, visits_per_week=1.0, views_per_session=3.5,
                  cart_rate=0.55, order_rate=0.75, basket_value=65.0, basket_lines=1.8,
                  churn_share=0.3),
    ),
)

FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec for spec in (_ABRUPT_STOP, _GRADUAL_FADE, _SEASONAL, _BIG_SPENDERS, _BROWSERS)
}
