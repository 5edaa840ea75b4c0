"""Online models: pure River pipelines and the logic around them (no I/O).

Every model takes plain dicts in and gives predictions out, learns from every event, is scored
before it learns (progressive validation), reads time only from event-time arguments, and
pickles into a :class:`ModelBundle` checkpoint.
"""

from __future__ import annotations

from online_models.anomaly import AnomalyScore, PurchaseAnomaly
from online_models.checkpoint import (
    SCORING_MODELS,
    CheckpointError,
    ModelBundle,
    decode_checkpoint,
    encode_checkpoint,
    read_header,
    scores_version,
)
from online_models.churn import ChurnModel, Explanation, FeatureContribution
from online_models.clv import ClvEstimate, ClvModel
from online_models.cooccurrence import CoOccurrence
from online_models.delayed_labels import ChurnLabeler, Snapshot, WindowLabeler
from online_models.drift import DriftEvent, DriftMonitor
from online_models.evaluation import BinnedROCAUC, CalibrationTable, HitRate
from online_models.features import DAY_MS, activity_features, behaviour_vector
from online_models.forecast import (
    ALL_CATEGORIES,
    ClosedBucket,
    ForecastPoint,
    RevenueForecast,
    RevenueForecaster,
)
from online_models.recommend import KIND_WEIGHTS, Recommendation, Recommender
from online_models.scoring import (
    CustomerScores,
    ModelStatus,
    model_statuses,
    score_customer,
    scoring_time,
)
from online_models.seasonal import Prediction, SeasonalForecaster
from online_models.segments import Segmenter, TenantSegments
from online_models.sentiment import SentimentModel, SentimentScore
from online_models.trending import DecayedPopularity
from online_models.triage import CATEGORIES, TicketCategory, TicketTriage, TriageResult

__all__ = [
    "ALL_CATEGORIES",
    "CATEGORIES",
    "DAY_MS",
    "KIND_WEIGHTS",
    "SCORING_MODELS",
    "AnomalyScore",
    "BinnedROCAUC",
    "CalibrationTable",
    "CheckpointError",
    "ChurnLabeler",
    "ChurnModel",
    "ClosedBucket",
    "ClvEstimate",
    "ClvModel",
    "CoOccurrence",
    "CustomerScores",
    "DecayedPopularity",
    "DriftEvent",
    "DriftMonitor",
    "Explanation",
    "FeatureContribution",
    "ForecastPoint",
    "HitRate",
    "ModelBundle",
    "ModelStatus",
    "Prediction",
    "PurchaseAnomaly",
    "Recommendation",
    "Recommender",
    "RevenueForecast",
    "RevenueForecaster",
    "SeasonalForecaster",
    "Segmenter",
    "SentimentModel",
    "SentimentScore",
    "Snapshot",
    "TenantSegments",
    "TicketCategory",
    "TicketTriage",
    "TriageResult",
    "WindowLabeler",
    "activity_features",
    "behaviour_vector",
    "decode_checkpoint",
    "encode_checkpoint",
    "model_statuses",
    "read_header",
    "score_customer",
    "scores_version",
    "scoring_time",
]
