"""A customer's scores from one function, whatever asked for them.

A customer is scored when their own events arrive, and again as the watermark moves on while
they are silent (the worker's silence sweep), so that churn risk rises with silence. Both go
through :func:`score_customer`, over the one feature vector of
:func:`~online_models.features.activity_features` and the segment's
:func:`~online_models.features.behaviour_vector`, at one time: :func:`scoring_time`. Nothing
here learns: learning is the batch's business, scoring only reads the models.

A model that has not learnt enough yet is not served: its score is ``None`` and the
:class:`ModelStatus` says why (``warming_up``) and how far it has come.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from online_models.checkpoint import ModelBundle
from online_models.churn import FeatureContribution
from online_models.features import behaviour_vector

__all__ = ["CustomerScores", "ModelStatus", "model_statuses", "score_customer",
           "scoring_time"]

#: How many of a churn probability's contributions are kept with it.
EXPLANATION_FEATURES = 5


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model's scores are served yet, and how far it has come."""

    status: Literal["ready", "warming_up"]
    examples: int
    needed: int
    pending: int


def model_statuses(bundle: ModelBundle) -> dict[str, ModelStatus]:
    """The churn and CLV models' statuses, for the scores of one batch or sweep.

    >>> statuses = model_statuses(ModelBundle())
    >>> statuses["churn"].status, statuses["churn"].needed
    ('warming_up', 200)
    """
    churn, clv = bundle.churn, bundle.clv
    return {
        "churn": ModelStatus("ready" if churn.ready else "warming_up", churn.example_count,
                             churn.min_examples, churn.labeler.n_pending),
        "clv": ModelStatus("ready" if clv.ready else "warming_up", clv.example_count,
                           clv.min_examples, clv.labeler.n_pending),
    }


@dataclass(frozen=True)
class CustomerScores:
    """Everything the models say about one customer at ``scored_at_ms`` (event time)."""

    scored_at_ms: int
    churn_probability: float | None
    churn_explanation: tuple[FeatureContribution, ...]
    churn_status: ModelStatus
    clv: float | None
    clv_status: ModelStatus
    segment: int | None
    segment_label: str | None
    #: The tenant's segments when the customer was scored (``segment`` among them).
    segments: tuple[int, ...] = ()
    #: The segmenter whose segment and label these are (one per worker and tenant).
    segmenter: str | None = None


def scoring_time(profile: Mapping[str, Any], watermark_ms: int | None) -> int:
    """The event time a customer is scored at: the watermark, or their own latest activity
    when it is ahead of the watermark (an event inside the allowed lateness).

    >>> scoring_time({"last_seen_at": 5_000}, 4_000), scoring_time({"last_seen_at": 5_000}, None)
    (5000, 5000)
    """
    last_seen = int(profile.get("last_seen_at") or 0)
    return last_seen if watermark_ms is None else max(watermark_ms, last_seen)


def score_customer(bundle: ModelBundle, tenant: str, profile: Mapping[str, Any],
                   now_ms: int, statuses: Mapping[str, ModelStatus]) -> CustomerScores:
    """Churn probability (explained), CLV and segment of one customer at ``now_ms``.

    ``statuses`` are :func:`model_statuses` of the same bundle, taken once for many
    customers. Pure: the models are read, never taught.
    """
    churn_status, clv_status = statuses["churn"], statuses["clv"]
    probability: float | None = None
    explanation: tuple[FeatureContribution, ...] = ()
    clv: float | None = None
    if churn_status.status == "ready":
        probability, explained = bundle.churn.predict(bundle.churn.featurize(profile, now_ms))
        explanation = tuple(explained.top(EXPLANATION_FEATURES))
    if clv_status.status == "ready":
        clv = bundle.clv.predict(profile, now_ms).clv
    segment, label = bundle.segments.assign(tenant, behaviour_vector(profile))
    return CustomerScores(scored_at_ms=now_ms, churn_probability=probability,
                          churn_explanation=explanation, churn_status=churn_status, clv=clv,
                          clv_status=clv_status, segment=segment, segment_label=label,
                          segments=bundle.segments.ids(tenant),
                          segmenter=bundle.segments.identity(tenant))
