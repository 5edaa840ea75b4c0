"""Purchase anomalies: the customer's own history first, a global model when history is short."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from river import anomaly

__all__ = ["AnomalyScore", "PurchaseAnomaly"]


class AnomalyScore(NamedTuple):
    score: float  # [0, 1], higher is stranger
    reason: str
    source: str  # "customer", "global" or "blend"


class PurchaseAnomaly:
    """Scores an order against the customer's past order totals and against everyone's orders.

    * **Per customer** (robust z-score): ``z = (total - median) / (1.4826 * MAD)`` over the
      customer's past totals, which the caller passes in (per-customer state lives in the
      feature store, not here). The MAD is floored at ``mad_floor`` of the median so a
      customer who always spends exactly 20 is not alarmed by 21. ``z`` maps to
      ``1 - exp(-z / z_scale)``.
    * **Global**: ``HalfSpaceTrees`` on (log total, log basket size), scaled into its unit
      cube by ``max_total`` and ``max_items``.

    The two blend with weight ``n / min_history`` on the customer's score (capped at 1).

    Parameters
    ----------
    min_history
        Past orders for the customer's own score to count fully.
    z_scale
        Robust z at which the customer score reaches ``1 - 1/e`` (about 0.63).
    mad_floor
        Lower bound of the spread, as a share of the median.
    max_total, max_items
        Upper ends of the global model's feature ranges.
    n_trees, height, window_size, seed
        ``HalfSpaceTrees`` hyperparameters.

    Attributes
    ----------
    model
        The global ``HalfSpaceTrees``.
    example_count
        Orders learnt by the global model.

    Examples
    --------
    >>> detector = PurchaseAnomaly()
    >>> history = [100.0, 120.0, 110.0, 95.0, 130.0]
    >>> usual = detector.score(115.0, basket_size=2, history=history)
    >>> odd = detector.score(950.0, basket_size=2, history=history)
    >>> usual.score < 0.2 < 0.9 < odd.score
    True
    >>> odd.reason
    "order of 950.00 is 8.6x this customer's typical 110.00"
    """

    def __init__(
        self,
        *,
        min_history: int = 5,
        z_scale: float = 4.0,
        mad_floor: float = 0.1,
        max_total: float = 100_000.0,
        max_items: int = 1_000,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int = 42,
    ) -> None:
        self.min_history = min_history
        self.z_scale = z_scale
        self.mad_floor = mad_floor
        self.max_total = max_total
        self.max_items = max_items
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.model = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self.example_count = 0

    @property
    def model_version(self) -> str:
        return f"anomaly-v1+{self.example_count}"

    def _global_features(self, total: float, basket_size: int) -> dict[str, float]:
        return {
            "log_total": min(math.log1p(max(total, 0.0)) / math.log1p(self.max_total), 1.0),
            "log_items": min(math.log1p(max(basket_size, 0)) / math.log1p(self.max_items), 1.0),
        }

    def learn(self, total: float, basket_size: int) -> None:
        """Teach the global model one order."""
        self.model.learn_one(self._global_features(total, basket_size))
        self.example_count += 1

    def score(self, total: float, basket_size: int, history: Sequence[float] = ()) -> AnomalyScore:
        """How unusual an order is, with a sentence saying why (pure). Amounts go without a
        currency: the caller knows the order's, and past totals may be in others."""
        weight = min(len(history) / self.min_history, 1.0)
        global_score = (
            self.model.score_one(self._global_features(total, basket_size))
            if self.example_count >= self.window_size
            else 0.0
        )
        if weight == 0.0:
            reason = (
                f"order of {total:,.2f} with {basket_size} items is unusual across all customers"
                if global_score >= 0.5
                else f"order of {total:,.2f} looks ordinary across all customers"
            )
            return AnomalyScore(global_score, reason, "global")
        median = statistics.median(history)
        mad = statistics.median(abs(x - median) for x in history)
        spread = max(1.4826 * mad, self.mad_floor * abs(median), 0.01)
        z = (total - median) / spread
        own_score = 1.0 - math.exp(-max(z, 0.0) / self.z_scale)
        score = weight * own_score + (1.0 - weight) * global_score
        if median > 0:
            ratio = total / median
            reason = (
                f"order of {total:,.2f} is {ratio:.1f}x this customer's typical {median:,.2f}"
            )
        else:
            reason = f"order of {total:,.2f} against this customer's typical {median:,.2f}"
        return AnomalyScore(score, reason, "customer" if weight == 1.0 else "blend")
