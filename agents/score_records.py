"""A customer's scores as the store writes them (:class:`~feature_store.scores.ScoreRecord`),
made in one place for both paths that score customers: the batch's models step
(:mod:`agents.models`) and the silence sweep (:mod:`agents.rescoring`)."""

from __future__ import annotations

from feature_store.scores import ScoreRecord
from online_models import CustomerScores, ModelStatus
from schemas.profile import ScoreStatus
from schemas.records import Contribution


def score_record(tenant: str, customer_id: str, scores: CustomerScores, *,
                 previous_segment: int | None, model_version: str,
                 partition: int | None = None, sentiment: float | None = None,
                 anomaly_score: float | None = None) -> ScoreRecord:
    """The models' scores of one customer as the store writes them."""
    return ScoreRecord(
        tenant=tenant, customer_id=customer_id, scored_at_ms=scores.scored_at_ms,
        churn_probability=scores.churn_probability,
        churn_explanation=[Contribution(**c._asdict()) for c in scores.churn_explanation],
        churn_status=_status(scores.churn_status), clv=scores.clv,
        clv_status=_status(scores.clv_status), segment=scores.segment,
        segment_label=scores.segment_label, previous_segment=previous_segment,
        model_version=model_version, partition=partition, sentiment=sentiment,
        anomaly_score=anomaly_score, segments=scores.segments, segmenter=scores.segmenter)


def _status(status: ModelStatus) -> ScoreStatus:
    return ScoreStatus(status=status.status, examples=status.examples, needed=status.needed,
                       pending=status.pending)
