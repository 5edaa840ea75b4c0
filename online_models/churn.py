"""Churn probability: online logistic regression on delayed event-time labels, explained."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from river import compose, linear_model, metrics, optim, preprocessing

from online_models.delayed_labels import ChurnLabeler, DelayedLabelModel, Snapshot
from online_models.evaluation import BinnedROCAUC, CalibrationTable
from online_models.features import DAY_MS, activity_features
from schemas import Contribution

__all__ = ["CLIP_STANDARDIZED", "ChurnModel", "Explanation", "FeatureContribution",
           "clip_standardized"]

#: Standardized inputs are clipped to this many standard deviations: early on a feature's
#: variance is tiny, and one customer far out must not carry a score (or its explanation).
CLIP_STANDARDIZED = 4.0


def clip_standardized(x: dict[str, float]) -> dict[str, float]:
    """Clip standardized features to +-:data:`CLIP_STANDARDIZED`.

    >>> clip_standardized({"a": 9.0, "b": -0.5})
    {'a': 4.0, 'b': -0.5}
    """
    return {name: max(-CLIP_STANDARDIZED, min(CLIP_STANDARDIZED, value))
            for name, value in x.items()}


class FeatureContribution(NamedTuple):
    """One feature's signed share of the logit: ``weight * scaled value``."""

    feature: str
    value: float
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """Why a churn probability is what it is, in logit space.

    ``intercept + sum(c.contribution for c in contributions) == logit`` holds exactly (up to
    float rounding); ``contributions`` holds every feature, largest magnitude first.
    """

    intercept: float
    contributions: tuple[FeatureContribution, ...]

    @property
    def logit(self) -> float:
        return self.intercept + math.fsum(c.contribution for c in self.contributions)

    def top(self, k: int = 5) -> list[FeatureContribution]:
        return list(self.contributions[:k])

    def as_records(self, k: int = 5) -> list[Contribution]:
        """The top ``k`` as the alert/API schema records."""
        return [Contribution(**c._asdict()) for c in self.contributions[:k]]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class ChurnModel(DelayedLabelModel):
    """``StandardScaler | LogisticRegression`` learning churn from delayed labels.

    At each activity a snapshot of the profile is kept (see
    :class:`~online_models.delayed_labels.ChurnLabeler`); activity before the deadline labels
    it ``0``, a watermark past the deadline labels it ``1``. Each resolved snapshot is first
    scored (progressive validation: ROC-AUC, log loss, calibration) and only then learnt.

    Parameters
    ----------
    horizon_days
        A customer silent this long after a snapshot counts as churned.
    merge_within_days
        Activity this close to the previous snapshot replaces it (same visit).
    review_every_days, max_review_age_days
        Take extra snapshots every ``review_every_days`` of silence, up to
        ``max_review_age_days`` after the last activity (``None`` disables them).
    release_at_deadline
        Learn a ``0`` label known early only once its deadline passed, like the ``1`` labels
        (avoids a censored training sample; see :mod:`online_models.delayed_labels`).
    learning_rate, l2
        AdaGrad's step and the L2 penalty of the logistic regression. AdaGrad rather than a
        fixed SGD step: with a fixed step the weights follow the last few hundred labels, and
        the served ranking of long-silent customers swung with them.
    min_examples, min_examples_per_class
        The model is :attr:`ready` (its probabilities are served) once it has learnt this
        many resolved examples, with at least ``min_examples_per_class`` of each label:
        before that a probability would be the prior or a guess from a handful of labels.
    featurizer
        ``(profile, now_ms) -> dict`` turning a profile into features (module-level function,
        so the model pickles).
    name
        Prefix of :attr:`model_version`.

    Attributes
    ----------
    model
        The River pipeline; ``model["LogisticRegression"].weights`` are the learned weights.
    labeler
        Pending snapshots waiting for their labels.
    example_count
        Resolved examples learnt so far.
    label_counts
        Resolved examples learnt per label (``False``: stayed, ``True``: churned).
    roc_auc, log_loss, calibration
        Progressive validation metrics on resolved examples, scored before learning.

    Examples
    --------
    >>> day = 86_400_000
    >>> churn = ChurnModel(horizon_days=30, review_every_days=None)
    >>> for week in range(20):  # a loyal weekly buyer and a one-off buyer, every week
    ...     at = week * 7 * day
    ...     _ = churn.observe_activity("loyal", {"orders": week + 1, "first_seen_at": 0,
    ...                                 "last_seen_at": at, "last_order_at": at}, at)
    ...     _ = churn.observe_activity(f"once{week}", {"orders": 1, "first_seen_at": at,
    ...                                 "last_seen_at": at, "last_order_at": at}, at)
    ...     _ = churn.advance_watermark(at)
    >>> churn.example_count > 0, churn.ready
    (True, False)
    >>> features = churn.featurize({"orders": 1, "first_seen_at": 0, "last_seen_at": 0}, 0)
    >>> probability, explanation = churn.predict(features)
    >>> abs(explanation.logit - math.log(probability / (1 - probability))) < 1e-9
    True
    """

    labeler: ChurnLabeler
    # Class-level defaults for what older pickles lack.
    min_examples = 200
    min_examples_per_class = 20

    def __init__(
        self,
        *,
        horizon_days: float = 30.0,
        merge_within_days: float = 1.0,
        review_every_days: float | None = 7.0,
        max_review_age_days: float = 90.0,
        release_at_deadline: bool = True,
        learning_rate: float = 0.05,
        l2: float = 0.001,
        min_examples: int = 200,
        min_examples_per_class: int = 20,
        featurizer: Callable[[Mapping[str, Any], int], dict[str, float]] = activity_features,
        name: str = "churn",
    ) -> None:
        self.horizon_days = horizon_days
        self.merge_within_days = merge_within_days
        self.review_every_days = review_every_days
        self.max_review_age_days = max_review_age_days
        self.release_at_deadline = release_at_deadline
        self.learning_rate = learning_rate
        self.l2 = l2
        self.min_examples = min_examples
        self.min_examples_per_class = min_examples_per_class
        self.featurizer = featurizer
        self.name = name
        self.model = compose.Pipeline(
            preprocessing.StandardScaler(),
            compose.FuncTransformer(clip_standardized),
            linear_model.LogisticRegression(optimizer=optim.AdaGrad(learning_rate), l2=l2),
        )
        self.labeler = ChurnLabeler(
            horizon_ms=int(horizon_days * DAY_MS),
            merge_within_ms=int(merge_within_days * DAY_MS),
            review_every_ms=int(review_every_days * DAY_MS) if review_every_days else None,
            max_review_age_ms=int(max_review_age_days * DAY_MS),
            release_at_deadline=release_at_deadline,
        )
        self.roc_auc = BinnedROCAUC()
        self.log_loss = metrics.LogLoss()
        self.calibration = CalibrationTable(n_bins=10)
        self.example_count = 0
        self.label_counts = {False: 0, True: 0}

    @property
    def ready(self) -> bool:
        """Whether the model has learnt enough resolved labels of both kinds to be served."""
        return (self.example_count >= self.min_examples
                and min(self.label_counts.values()) >= self.min_examples_per_class)

    def featurize(self, profile: Mapping[str, Any], now_ms: int) -> dict[str, float]:
        return self.featurizer(profile, now_ms)

    def observe_activity(self, customer_id: str, profile: Mapping[str, Any], at_ms: int) -> int:
        """Snapshot ``profile`` at ``at_ms``; learn what this resolves. Returns examples learnt."""
        return self._learn(self.labeler.observe_activity(customer_id, profile, at_ms))

    def _learn_one(self, snapshot: Snapshot, features: dict[str, float]) -> float:
        churned = snapshot.label == 1.0
        # Score first, then learn: the metrics never see a model that trained on the example.
        probability = self.model.predict_proba_one(features).get(True, 0.5)
        self.roc_auc.update(churned, probability)
        self.log_loss.update(churned, probability)
        self.calibration.update(probability, float(churned))
        self.model.learn_one(features, churned)
        self.label_counts[churned] += 1
        return abs(float(churned) - probability)

    def predict(self, features: Mapping[str, float]) -> tuple[float, Explanation]:
        """Churn probability and its explanation; pure (no scaler or weight updates).

        River 0.26 pipelines do not update unsupervised steps in ``predict_one`` unless inside
        ``compose.learn_during_predict()``; we go further and read the scaler and weights
        directly, so the explanation is computed from exactly the numbers that give the score:
        each contribution is a weight times a standardized, clipped input.
        """
        scaler: preprocessing.StandardScaler = self.model["StandardScaler"]
        regression: linear_model.LogisticRegression = self.model["LogisticRegression"]
        scaled = clip_standardized(scaler.transform_one(dict(features)))
        weights = regression.weights
        contributions = sorted(
            (
                FeatureContribution(name, float(features[name]), weights.get(name, 0.0) * value)
                for name, value in scaled.items()
            ),
            key=lambda c: -abs(c.contribution),
        )
        explanation = Explanation(float(regression.intercept), tuple(contributions))
        return _sigmoid(explanation.logit), explanation

    def metrics_dict(self) -> dict[str, Any]:
        """Online metrics for ``/v1/models``."""
        return {
            "model_version": self.model_version,
            "ready": self.ready,
            "examples": self.example_count,
            "examples_churned": self.label_counts[True],
            "examples_stayed": self.label_counts[False],
            "pending": self.labeler.n_pending,
            "roc_auc": self.roc_auc.get() if self.example_count else None,
            "log_loss": self.log_loss.get() if self.example_count else None,
            "calibration": self.calibration.rows(),
        }
