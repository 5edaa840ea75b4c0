"""The simulated customers and their hidden ground truth.

Each customer has a latent behavioural segment, a taste (2-3 preferred categories and a
ranked list of favourite products, largely shared with the other customers of the same taste
cluster so that collaborative filtering beats a popularity baseline), a churn date or none,
a ticket mood and a marketing consent. None of it appears in the events; the quality
benchmarks compare what the system learned against :meth:`Customer.truth`.

>>> import random
>>> from simulator.catalogue import Catalogue
>>> rng = random.Random(7)
>>> catalogue = Catalogue.build(rng, size=300)
>>> people = build_population(rng, catalogue, customers=50, start_ms=0, end_ms=90 * DAY_MS)
>>> len(people), {person.segment for person in people} <= set(range(len(SEGMENTS)))
(50, True)
"""

from __future__ import annotations

import functools
import random
from bisect import bisect_right as bisect
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

from simulator.catalogue import Catalogue
from simulator.texts import MOODS

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Segment:
    """How the customers of one latent segment behave."""

    name: str
    share: float
    #: Mean days between sessions.
    gap_days: float
    #: Mean browsing steps per session.
    steps: float
    #: Probability that a session ends in a purchase.
    p_buy: float
    #: Weight of add_to_cart among browsing steps (drives cart abandonment when not buying).
    cart_weight: float
    #: Mean extra items in a basket (Poisson) and the chance of buying more than one of an item.
    basket_extra: float
    p_multi_quantity: float
    #: Taste for price: > 0 prefers expensive products, < 0 cheap ones.
    price_alpha: float
    #: Chance of a ticket after a purchase, and per session without one.
    p_ticket_purchase: float
    p_ticket_session: float
    #: Weights of the moods happy, neutral, angry.
    moods: tuple[float, float, float]
    #: Chance of churning within the simulated period.
    p_churn: float
    #: Chance that a session starts anonymously (logged out).
    p_anonymous: float
    #: How the customer phrases searches: "bargain", "premium" or "plain".
    style: str
    search_weight: float


SEGMENTS: tuple[Segment, ...] = (
    Segment("loyal_high_spender", 0.15, gap_days=2.5, steps=6, p_buy=0.45, cart_weight=0.18,
            basket_extra=1.4, p_multi_quantity=0.15, price_alpha=1.2, p_ticket_purchase=0.03,
            p_ticket_session=0.002, moods=(0.6, 0.35, 0.05), p_churn=0.08, p_anonymous=0.10,
            style="premium", search_weight=0.10),
    Segment("bargain_hunter", 0.25, gap_days=4.0, steps=10, p_buy=0.22, cart_weight=0.10,
            basket_extra=0.6, p_multi_quantity=0.35, price_alpha=-1.5, p_ticket_purchase=0.05,
            p_ticket_session=0.003, moods=(0.3, 0.5, 0.2), p_churn=0.30, p_anonymous=0.25,
            style="bargain", search_weight=0.30),
    Segment("window_shopper", 0.25, gap_days=2.0, steps=12, p_buy=0.025, cart_weight=0.12,
            basket_extra=0.2, p_multi_quantity=0.05, price_alpha=0.0, p_ticket_purchase=0.02,
            p_ticket_session=0.002, moods=(0.45, 0.45, 0.1), p_churn=0.35, p_anonymous=0.35,
            style="plain", search_weight=0.15),
    Segment("one_time_buyer", 0.20, gap_days=12.0, steps=5, p_buy=0.6, cart_weight=0.10,
            basket_extra=0.3, p_multi_quantity=0.1, price_alpha=0.0, p_ticket_purchase=0.06,
            p_ticket_session=0.003, moods=(0.3, 0.5, 0.2), p_churn=0.60, p_anonymous=0.35,
            style="plain", search_weight=0.20),
    Segment("support_heavy", 0.15, gap_days=6.0, steps=5, p_buy=0.25, cart_weight=0.12,
            basket_extra=0.6, p_multi_quantity=0.1, price_alpha=0.3, p_ticket_purchase=0.40,
            p_ticket_session=0.06, moods=(0.1, 0.3, 0.6), p_churn=0.45, p_anonymous=0.15,
            style="plain", search_weight=0.10),
)

#: Taste clusters per segment: customers of one cluster share most of their favourites.
CLUSTERS_PER_SEGMENT = 4
CLUSTER_FAVOURITES = 40
PERSONAL_FAVOURITES = 30
SHARED_FAVOURITES = 22
OWN_FAVOURITES = 8
#: Ground truth lists this many favourite products per customer.
TRUTH_FAVOURITES = 10
MARKETING_CONSENT_RATE = 0.8


@dataclass(frozen=True, slots=True)
class TasteCluster:
    categories: tuple[str, ...]
    favourites: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Customer:
    index: int
    customer_id: str
    segment: int
    cluster: int
    categories: tuple[str, ...]
    #: Product indices, most favourite first, and cumulative weights for drawing them.
    favourites: list[int]
    favourite_cum: list[float]
    mood: str
    consent: bool
    first_ms: int
    churn_ms: int | None
    anonymous_ids: list[str]

    @property
    def profile(self) -> Segment:
        return SEGMENTS[self.segment]

    def truth(self, catalogue: Catalogue) -> dict[str, object]:
        """The hidden ground truth of this customer, JSON-ready."""
        return {
            "customer_id": self.customer_id,
            "segment": self.segment,
            "segment_name": SEGMENTS[self.segment].name,
            "taste_cluster": self.segment * CLUSTERS_PER_SEGMENT + self.cluster,
            "churn_at": _iso(self.churn_ms) if self.churn_ms is not None else None,
            "first_seen_at": _iso(self.first_ms),
            "preferred_categories": list(self.categories),
            "favourite_products": [
                catalogue.products[index].product_id
                for index in self.favourites[:TRUTH_FAVOURITES]
            ],
            "mood": self.mood,
            "consent": self.consent,
            "anonymous_ids": list(self.anonymous_ids),
        }


def _iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``, the same format as the events' times."""
    whole = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ms % 1000:03d}Z"


def _weighted_sample(
    rng: random.Random, items: list[int], weights: list[float], k: int
) -> list[int]:
    """``k`` distinct items drawn without replacement, proportionally to ``weights``."""
    # Efraimidis-Spirakis: the k largest keys u ** (1 / w).
    pairs = zip(items, weights, strict=True)
    keyed = sorted(((rng.random() ** (1.0 / w), item) for item, w in pairs if w > 0), reverse=True)
    return [item for _, item in keyed[:k]]


def _taste_clusters(rng: random.Random, catalogue: Catalogue) -> list[list[TasteCluster]]:
    clusters: list[list[TasteCluster]] = []
    for segment in SEGMENTS:
        row = []
        for _ in range(CLUSTERS_PER_SEGMENT):
            categories = tuple(rng.sample(catalogue.categories, rng.choice((2, 3))))
            pool = [index for category in categories for index in catalogue.by_category[category]]
            # Flattened popularity (rank ** -0.3) so mid-tail products become favourites too:
            # a popularity baseline cannot find them, collaborative filtering can.
            weights = [
                catalogue.products[index].rank ** -0.3
                * catalogue.products[index].price ** segment.price_alpha
                for index in pool
            ]
            favourites = _weighted_sample(rng, pool, weights, CLUSTER_FAVOURITES)
            row.append(TasteCluster(categories, tuple(favourites)))
        clusters.append(row)
    return clusters


def build_population(
    rng: random.Random,
    catalogue: Catalogue,
    *,
    customers: int,
    start_ms: int,
    end_ms: int,
    prefix: str = "c-",
    seed: int = 0,
) -> list[Customer]:
    """``customers`` customers with their hidden traits, deterministic for ``rng``."""
    clusters = _taste_clusters(rng, catalogue)

    @functools.cache
    def own_samplers(segment_index: int, category: str) -> tuple[list[int], list[float]]:
        """A category's products and cumulative weights by popularity and price taste."""
        alpha = SEGMENTS[segment_index].price_alpha
        pool = catalogue.by_category[category]
        weights = (catalogue.products[i].rank ** -0.5 * catalogue.products[i].price ** alpha
                   for i in pool)
        return pool, list(accumulate(weights))

    segment_weights = list(accumulate(segment.share for segment in SEGMENTS))
    period = end_ms - start_ms
    people: list[Customer] = []
    for index in range(customers):
        segment_index = rng.choices(range(len(SEGMENTS)), cum_weights=segment_weights)[0]
        segment = SEGMENTS[segment_index]
        cluster_index = rng.randrange(CLUSTERS_PER_SEGMENT)
        cluster = clusters[segment_index][cluster_index]
        categories = list(cluster.categories)
        if rng.random() < 0.3:  # a personal twist on the cluster's categories
            others = [c for c in catalogue.categories if c not in categories]
            categories[rng.randrange(len(categories))] = rng.choice(others)
        shared = list(cluster.favourites)
        rank_weights = [1.0 / (position + 1) ** 0.7 for position in range(len(shared))]
        favourites = _weighted_sample(rng, shared, rank_weights, SHARED_FAVOURITES)
        # A few personal favourites from the customer's own categories (with replacement,
        # deduplicated: cheap, since this runs once per customer).
        chosen = set(favourites)
        own: list[int] = []
        for _ in range(OWN_FAVOURITES * 5):
            pool, cum = own_samplers(segment_index, categories[rng.randrange(len(categories))])
            item = pool[bisect(cum, rng.random() * cum[-1])]
            if item not in chosen:
                chosen.add(item)
                own.append(item)
                if len(own) == OWN_FAVOURITES:
                    break
        # Interleave: mostly the cluster's favourites first, a few personal ones among them.
        for position, item in enumerate(own):
            favourites.insert(min(len(favourites), 2 + position * 3), item)
        favourites = favourites[:PERSONAL_FAVOURITES]
        favourite_cum = list(accumulate(1.0 / (p + 1) ** 0.8 for p in range(len(favourites))))
        first_ms = start_ms + int(rng.random() * 0.3 * period)
        churn_ms: int | None = None
        if rng.random() < segment.p_churn:
            earliest = first_ms + 14 * DAY_MS
            latest = end_ms - 7 * DAY_MS
            if latest > earliest:
                churn_ms = earliest + int(rng.random() * (latest - earliest))
        devices = 1 + (rng.random() < 0.4) + (rng.random() < 0.15)
        people.append(
            Customer(
                index=index,
                customer_id=f"{prefix}{index:06d}",
                segment=segment_index,
                cluster=cluster_index,
                categories=tuple(categories),
                favourites=favourites,
                favourite_cum=favourite_cum,
                mood=rng.choices(MOODS, weights=segment.moods)[0],
                consent=rng.random() < MARKETING_CONSENT_RATE,
                first_ms=first_ms,
                churn_ms=churn_ms,
                anonymous_ids=[f"a-{seed}-{index}-{device}" for device in range(devices)],
            )
        )
    return people
