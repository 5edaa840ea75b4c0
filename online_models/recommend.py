"""Recommendations: implicit-feedback matrix factorisation, bought-together and trending."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from river import optim, reco

from online_models.cooccurrence import CoOccurrence
from online_models.evaluation import HitRate
from online_models.trending import DecayedPopularity

__all__ = ["KIND_WEIGHTS", "Recommendation", "Recommender"]

#: Implicit feedback strength per interaction kind (a view says less than a purchase).
KIND_WEIGHTS: dict[str, float] = {
    "page_view": 0.5,
    "product_view": 1.0,
    "view": 1.0,
    "search": 0.5,
    "add_to_cart": 3.0,
    "cart": 3.0,
    "checkout_start": 3.0,
    "purchase": 5.0,
}

Recommendation = tuple[str, float, str]  # (item, score, source)


class Recommender:
    """Top-N products per customer, learning from every interaction.

    * **collaborative** -- ``reco.BiasedMF`` on implicit weights (view 1 < cart 3 <
      purchase 5); every positive is paired with ``negatives`` sampled items at ``0``, drawn
      from recent interactions (so popularity-proportional: the model must beat popularity,
      not just learn it);
    * **bought_together** -- :class:`~online_models.cooccurrence.CoOccurrence` of the item with
      the customer's recent products;
    * **trending** -- :class:`~online_models.trending.DecayedPopularity`, the cold-start
      fallback for customers the factorisation has not seen ``min_user_events`` times;
    * **recently viewed** -- the customer's own recent products not bought yet, with a bonus
      of up to ``recent_weight`` by how much the customer interacted with each (the
      ``kind_weights`` summed: viewed four times and carted beats glanced at once), relative
      to the strongest of them: what a customer keeps looking at is what they are likeliest
      to buy next, and neither the factorisation nor popularity knows it. The recency rank
      alone (the most recent first) said less: a favourite viewed in every visit and an item
      glanced at on the way out looked alike. A product of ``recent`` this recommender saw no
      interaction of (a visitor's, stitched in) counts as one view; a customer it saw none
      of gets the recency rank, fading from ``recent_weight`` to nothing for the oldest.

    Scoring is restricted to candidates (the recent products, their co-occurrence
    neighbours and the ``n_candidates`` most trending items, or an explicit ``candidates``
    list) and
    vectorised with numpy, so even a full catalogue of 2,000 items scores in about a
    millisecond.

    Parameters
    ----------
    n_factors, learning_rate, l2
        Size, SGD step and L2 penalty of the factorisation. Each interaction is learnt once,
        in one pass, so the step is small (0.02), for vectors that average over a customer's
        and an item's history rather than follow their last few interactions: against
        0.05, the hit-rate lift over popularity of the quality benchmark's shops
        (``load_tests/quality``, replayed offline) rose on 11 of 12 shops and seeds, by
        about 7% on the median. It needs more interactions before a taste shows.
    negatives
        Sampled negatives per positive interaction.
    kind_weights
        Implicit feedback per interaction kind (default :data:`KIND_WEIGHTS`).
    trending_halflife_days
        Event-time half-life of trending popularity.
    together_weight
        Weight of the (0-1) co-occurrence score added to the factorisation score.
    recent_weight
        Bonus of the recent product the customer interacted with most.
    interest_items
        Products whose interaction weights are kept per customer (the strongest; the
        customer's recent products are 20 in the feature store).
    min_user_events
        Interactions before a customer gets collaborative scores.
    n_candidates
        Trending items added to the candidate set.
    seed
        Seed of the latent initialisation and of negative sampling.

    Attributes
    ----------
    mf, together, trending
        The three learners.
    interest
        Customer -> {product: summed ``kind_weights`` of their interactions with it}, the
        strongest ``interest_items`` (up to twice as many between trims).
    hit_rate, baseline_hit_rate
        Progressive hit-rate@10 on purchases, of this recommender and of pure trending.
    example_count
        Interactions learnt.

    Examples
    --------
    >>> day = 86_400_000
    >>> recommender = Recommender(seed=1)
    >>> for i in range(30):
    ...     _ = recommender.learn(f"c{i}", "tent", "purchase", at_ms=i * day)
    ...     _ = recommender.learn(f"c{i}", "stove", "purchase", at_ms=i * day, recent=["tent"])
    >>> recommender.top_n("someone-new", 1, exclude={"tent"})  # doctest: +ELLIPSIS
    [('stove', ..., 'trending')]
    >>> recommender.top_n("someone-new", 1, recent=["tent"], exclude={"tent"})
    [('stove', 1.0, 'bought_together')]
    >>> recommender.top_n("c1", 1, recent=["lamp", "tent"], exclude={"tent", "stove"})
    [('lamp', 2.0, 'recently_viewed')]
    """

    def __init__(
        self,
        *,
        n_factors: int = 16,
        learning_rate: float = 0.02,
        l2: float = 0.01,
        negatives: int = 2,
        kind_weights: Mapping[str, float] | None = None,
        trending_halflife_days: float = 7.0,
        together_weight: float = 1.0,
        recent_weight: float = 2.0,
        min_user_events: int = 3,
        n_candidates: int = 200,
        interest_items: int = 30,
        seed: int = 42,
    ) -> None:
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.l2 = l2
        self.negatives = negatives
        self.kind_weights = dict(kind_weights or KIND_WEIGHTS)
        self.trending_halflife_days = trending_halflife_days
        self.together_weight = together_weight
        self.recent_weight = recent_weight
        self.min_user_events = min_user_events
        self.n_candidates = n_candidates
        self.interest_items = interest_items
        self.seed = seed
        self.mf = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            l2_bias=l2,
            l2_latent=l2,
            weight_initializer=optim.initializers.Zeros(),
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            clip_gradient=5.0,  # implicit weights up to 5 make big early errors; don't diverge
        )
        self.together = CoOccurrence()
        self.trending = DecayedPopularity(halflife_ms=int(trending_halflife_days * 86_400_000))
        self.hit_rate = HitRate()
        self.baseline_hit_rate = HitRate()
        self.example_count = 0
        self.interest: dict[str, dict[str, float]] = {}
        self._user_events: dict[str, int] = {}
        self._recent_items: deque[str] = deque(maxlen=2000)
        self._rng = random.Random(seed)
        # A dense copy of the item factors for vectorised scoring, refreshed lazily from the
        # items learnt since (row 0 stays zero: the row of items the model never saw).
        self._rows: dict[str, int] = {}
        self._item_latents = np.zeros((1024, n_factors))
        self._item_biases = np.zeros(1024)
        self._dirty: set[str] = set()

    def __setstate__(self, state: dict[str, object]) -> None:
        # A checkpoint of a recommender from before ``interest`` restores with none yet.
        state.setdefault("interest", {})
        state.setdefault("interest_items", 30)
        self.__dict__.update(state)

    @property
    def model_version(self) -> str:
        return f"reco-v1+{self.example_count}"

    def learn(
        self,
        customer_id: str,
        product_id: str,
        kind: str,
        at_ms: int,
        *,
        recent: Sequence[str] = (),
        exclude: Collection[str] = (),
    ) -> bool | None:
        """Learn one interaction; for a purchase, first record whether we would have hit it.

        ``recent`` are the customer's recent products (most recent first, from the profile);
        ``exclude`` what the served list would have excluded. Returns the hit for purchases.
        """
        if kind == "purchase":
            return self.learn_order(customer_id, [product_id], at_ms, recent=recent,
                                    exclude=exclude)[0]
        self._fit(customer_id, product_id, kind, at_ms, recent)
        return None

    def learn_order(
        self,
        customer_id: str,
        product_ids: Sequence[str],
        at_ms: int,
        *,
        recent: Sequence[str] = (),
        exclude: Collection[str] = (),
    ) -> list[bool]:
        """Learn an order's products as purchases, after recording for each whether it was
        in the top-10 served before the order (progressive validation).

        The list is computed once per order: the customer saw one list before buying, and
        top-N is the recommender's dearest step. Returns the hits in ``product_ids`` order.
        """
        ours = {item for item, _, _ in self.top_n(customer_id, 10, exclude, recent=recent)}
        baseline = {item for item, _ in self.trending.top(10, exclude)}
        hits = []
        for product_id in product_ids:
            hit = product_id in ours
            hits.append(hit)
            self.hit_rate.update(hit)
            self.baseline_hit_rate.update(product_id in baseline)
            self._fit(customer_id, product_id, "purchase", at_ms, recent)
        return hits

    def _fit(self, customer_id: str, product_id: str, kind: str, at_ms: int,
             recent: Sequence[str]) -> None:
        """One positive interaction, its sampled negatives, trending and co-occurrence."""
        weight = self.kind_weights.get(kind, 1.0)
        self.mf.learn_one(customer_id, product_id, weight)
        self._dirty.add(product_id)
        for _ in range(self.negatives if self._recent_items else 0):
            negative = self._recent_items[self._rng.randrange(len(self._recent_items))]
            if negative != product_id:
                self.mf.learn_one(customer_id, negative, 0.0)
                self._dirty.add(negative)
        self.trending.add(product_id, weight, at_ms)
        self.together.update(product_id, recent[:5], weight)
        self._remember_interest(customer_id, product_id, weight)
        self._recent_items.append(product_id)
        self._user_events[customer_id] = self._user_events.get(customer_id, 0) + 1
        self.example_count += 1

    def _remember_interest(self, customer_id: str, product_id: str, weight: float) -> None:
        row = self.interest.get(customer_id)
        if row is None:
            row = self.interest[customer_id] = {}
        row[product_id] = row.get(product_id, 0.0) + weight
        if len(row) >= 2 * self.interest_items:  # keep the strongest, the latest on a tie
            strongest = sorted(reversed(row.items()), key=lambda kv: -kv[1])
            self.interest[customer_id] = dict(strongest[: self.interest_items])

    def top_n(
        self,
        customer_id: str,
        n: int = 10,
        exclude: Collection[str] = (),
        *,
        recent: Sequence[str] = (),
        candidates: Sequence[str] | None = None,
    ) -> list[Recommendation]:
        """The customer's top ``n`` as ``(item, score, source)``, never an item of ``exclude``.

        Pure: nothing is learnt and no latent vector is created for unseen ids.
        """
        related = dict(self.together.related(recent, n=50)) if recent else {}
        own = self._recent_bonus(customer_id, recent, exclude)
        if self._user_events.get(customer_id, 0) >= self.min_user_events:
            if candidates is None:
                pool = dict.fromkeys(own)
                pool.update(dict.fromkeys(related))
                pool.update(dict.fromkeys(item for item, _ in self.trending.top(self.n_candidates)))
                candidates = list(pool)
            candidates = [item for item in candidates if item not in exclude]
            if candidates:
                return self._collaborative(customer_id, candidates, related, own, n)
        ranked: list[Recommendation] = [
            (item, bonus, "recently_viewed")
            for item, bonus in sorted(own.items(), key=lambda kv: -kv[1])]
        ranked += [
            (item, score, "bought_together")
            for item, score in sorted(related.items(), key=lambda kv: -kv[1])
            if item not in exclude and item not in own
        ]
        ranked = ranked[:n]
        if len(ranked) < n:
            taken = {item for item, _, _ in ranked}
            for item, score in self.trending.top(n + len(taken), exclude):
                if item not in taken:
                    ranked.append((item, score, "trending"))
        return ranked[:n]

    def _recent_bonus(self, customer_id: str, recent: Sequence[str],
                      exclude: Collection[str]) -> dict[str, float]:
        """The recent products not excluded, most recent first, with their bonus: by the
        customer's interest in each relative to the strongest, else by recency rank."""
        row = self.interest.get(customer_id)
        if not row:
            return {item: self.recent_weight * (1.0 - rank / len(recent))
                    for rank, item in enumerate(recent) if item not in exclude}
        interest = {item: row.get(item, 1.0) for item in recent if item not in exclude}
        strongest = max(interest.values(), default=1.0)
        return {item: self.recent_weight * value / strongest
                for item, value in interest.items()}

    def _collaborative(
        self, user: str, candidates: list[str], related: Mapping[str, float],
        own: Mapping[str, float], n: int
    ) -> list[Recommendation]:
        self._sync_items()
        rows = np.fromiter(
            (self._rows.get(item, 0) for item in candidates), dtype=np.intp, count=len(candidates)
        )
        mf = self.mf
        # .get(): BiasedMF's defaultdicts would grow a random vector for an id merely scored.
        user_latent = mf.u_latents.get(user)
        scores = mf.global_mean.get() + mf.u_biases.get(user, 0.0) + self._item_biases[rows]
        if user_latent is not None:
            scores = scores + self._item_latents[rows] @ user_latent
        together = np.array([related.get(item, 0.0) for item in candidates])
        recency = np.array([own.get(item, 0.0) for item in candidates])
        scores += self.together_weight * together + recency
        k = min(n, len(candidates))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [(candidates[i], float(scores[i]), _source(together[i], recency[i]))
                for i in best]

    def _sync_items(self) -> None:
        for item in self._dirty:
            row = self._rows.get(item)
            if row is None:
                row = self._rows[item] = len(self._rows) + 1
                if row >= len(self._item_biases):  # grow by doubling
                    self._item_latents = np.vstack(
                        [self._item_latents, np.zeros_like(self._item_latents)]
                    )
                    self._item_biases = np.concatenate(
                        [self._item_biases, np.zeros_like(self._item_biases)]
                    )
            self._item_latents[row] = self.mf.i_latents[item]
            self._item_biases[row] = self.mf.i_biases[item]
        self._dirty.clear()

    def forget(self, customer_id: str) -> None:
        """Erase a customer's latent factors, counts and interest."""
        for table in (self.mf.u_latents, self.mf.u_biases, self._user_events, self.interest):
            table.pop(customer_id, None)

    def metrics_dict(self) -> dict[str, float | int | str | None]:
        baseline = self.baseline_hit_rate.get()
        return {
            "model_version": self.model_version,
            "examples": self.example_count,
            "purchases_evaluated": self.hit_rate.n,
            "hit_rate_at_10": self.hit_rate.get(),
            "popularity_hit_rate_at_10": baseline,
            "lift_over_popularity": self.hit_rate.get() / baseline if baseline else None,
        }


def _source(together: float, recency: float) -> str:
    """What a collaborative list entry mostly owes its place to."""
    if recency >= 0.5 and recency >= together:
        return "recently_viewed"
    return "bought_together" if together >= 0.5 else "collaborative"
