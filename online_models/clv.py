"""Customer lifetime value: expected purchases in the next window times expected order value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from river import compose, linear_model, metrics, optim, preprocessing, stats

from online_models.delayed_labels import DelayedLabelModel, Snapshot, WindowLabeler
from online_models.features import DAY_MS, activity_features

__all__ = ["ClvEstimate", "ClvModel"]


class ClvEstimate(NamedTuple):
    """``clv == expected_purchases * expected_order_value`` over the model's window."""

    clv: float
    expected_purchases: float
    expected_order_value: float


class ClvModel(DelayedLabelModel):
    """Online CLV: a Poisson regression on delayed window labels times a shrunk order value.

    * **Purchases.** A snapshot of the profile is kept at each activity (and every
      ``review_every_days`` of silence); once the watermark passes ``window_days`` after it,
      the number of purchases in the window is its label. ``StandardScaler |
      LinearRegression(loss=Poisson)`` learns ``E[purchases | features] = exp(w . x)``.
    * **Order value.** The customer's average order value shrunk towards the running mean
      order value of everyone, with the strength of ``prior_orders`` orders (the idea of the
      Gamma-Gamma model: a single $300 order is weak evidence of a $300 customer).

    Each resolved snapshot is first predicted, then learnt (progressive MAE on purchases and on
    spend in the window).

    Parameters
    ----------
    window_days
        The CLV window (label horizon).
    merge_within_days, review_every_days, max_review_age_days
        Snapshot policy, as in :class:`~online_models.churn.ChurnModel`.
    learning_rate, l2
        SGD step and L2 penalty of the Poisson regression.
    prior_orders
        Weight of the population mean order value, in orders.
    min_examples
        The model is :attr:`ready` (its estimates are served) once it has learnt this many
        resolved windows: before that an estimate is the untrained regression's guess.
    featurizer
        ``(profile, now_ms) -> dict``; a module-level function so the model pickles.

    Attributes
    ----------
    model
        The purchases regressor (River pipeline).
    labeler
        Pending window snapshots.
    order_value
        Running mean order value of all purchases seen.
    purchases_mae, spend_mae
        Progressive validation on resolved windows.
    example_count
        Resolved windows learnt.

    Examples
    --------
    >>> day = 86_400_000
    >>> clv = ClvModel(window_days=30, review_every_days=None)
    >>> for week in range(30):
    ...     at = week * 7 * day
    ...     profile = {"orders": week + 1, "revenue": 20.0 * (week + 1), "avg_order_value": 20.0,
    ...                "first_seen_at": 0, "last_seen_at": at, "last_order_at": at}
    ...     _ = clv.observe_activity("weekly", profile, at, purchases=1, spend=20.0)
    ...     _ = clv.advance_watermark(at)
    >>> estimate = clv.predict(profile, now_ms=at)
    >>> estimate.expected_order_value
    20.0
    >>> estimate.expected_purchases > 1.0
    True
    """

    labeler: WindowLabeler
    min_examples = 100  # the default, for older pickles

    def __init__(
        self,
        *,
        window_days: float = 90.0,
        merge_within_days: float = 1.0,
        review_every_days: float | None = 14.0,
        max_review_age_days: float = 180.0,
        learning_rate: float = 0.01,
        l2: float = 0.0,
        prior_orders: float = 2.0,
        min_examples: int = 100,
        featurizer: Callable[[Mapping[str, Any], int], dict[str, float]] = activity_features,
        name: str = "clv",
    ) -> None:
        self.window_days = window_days
        self.merge_within_days = merge_within_days
        self.review_every_days = review_every_days
        self.max_review_age_days = max_review_age_days
        self.learning_rate = learning_rate
        self.l2 = l2
        self.prior_orders = prior_orders
        self.min_examples = min_examples
        self.featurizer = featurizer
        self.name = name
        self.model = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LinearRegression(
                optimizer=optim.SGD(learning_rate),
                loss=optim.losses.Poisson(),
                l2=l2,
                # exp() makes the Poisson gradient explode on an unlucky early step.
                clip_gradient=1.0,
            ),
        )
        self.labeler = WindowLabeler(
            horizon_ms=int(window_days * DAY_MS),
            merge_within_ms=int(merge_within_days * DAY_MS),
            review_every_ms=int(review_every_days * DAY_MS) if review_every_days else None,
            max_review_age_ms=int(max_review_age_days * DAY_MS),
        )
        self.order_value = stats.Mean()
        self.purchases_mae = metrics.MAE()
        self.spend_mae = metrics.MAE()
        self.example_count = 0

    @property
    def ready(self) -> bool:
        """Whether the model has learnt enough resolved windows to be served."""
        return self.example_count >= self.min_examples

    def observe_activity(
        self,
        customer_id: str,
        profile: Mapping[str, Any],
        at_ms: int,
        *,
        purchases: int = 0,
        spend: float = 0.0,
    ) -> int:
        """Record activity (with ``purchases`` orders worth ``spend``, already in ``profile``)."""
        if purchases:
            self.order_value.update(spend / purchases, w=purchases)
        return self._learn(
            self.labeler.observe_activity(
                customer_id, profile, at_ms, purchases=purchases, spend=spend
            )
        )

    def _learn_one(self, snapshot: Snapshot, features: dict[str, float]) -> float:
        purchases = self._expected_purchases(features)
        value = self.expected_order_value(snapshot.profile)
        self.purchases_mae.update(snapshot.purchases, purchases)
        self.spend_mae.update(snapshot.spend, purchases * value)
        self.model.learn_one(features, float(snapshot.purchases))
        # Purchases missed, capped: one extreme customer must not read as a drift.
        return min(abs(snapshot.purchases - purchases), 10.0)

    def _expected_purchases(self, features: dict[str, float]) -> float:
        # Cap the log-link so one extreme customer cannot overflow exp().
        regression = self.model["LinearRegression"]
        scaled = self.model["StandardScaler"].transform_one(features)
        raw = regression.intercept + sum(
            regression.weights.get(k, 0.0) * v for k, v in scaled.items()
        )
        return float(
            min(max(self.model["LinearRegression"].loss.mean_func(min(raw, 10.0)), 0.0), 1e4)
        )

    def expected_order_value(self, profile: Mapping[str, Any]) -> float:
        """Average order value shrunk towards the population mean by ``prior_orders``."""
        orders = float(profile.get("orders") or 0)
        own = float(profile.get("avg_order_value") or 0.0)
        prior = self.order_value.get()
        if orders + self.prior_orders == 0:
            return prior
        return (orders * own + self.prior_orders * prior) / (orders + self.prior_orders)

    def predict(self, profile: Mapping[str, Any], now_ms: int) -> ClvEstimate:
        """Expected spend in the next ``window_days`` from ``now_ms`` (pure)."""
        purchases = self._expected_purchases(self.featurizer(profile, now_ms))
        value = self.expected_order_value(profile)
        return ClvEstimate(purchases * value, purchases, value)

    def metrics_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "ready": self.ready,
            "examples": self.example_count,
            "pending": self.labeler.n_pending,
            "purchases_mae": self.purchases_mae.get() if self.example_count else None,
            "spend_mae": self.spend_mae.get() if self.example_count else None,
            "mean_order_value": self.order_value.get(),
        }
