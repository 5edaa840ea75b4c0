"""The Redis feature store: key layout, atomic idempotent updates (Lua), reads for the API."""

from feature_store.batch import (
    AppliedBatch,
    AppliedEvent,
    CartSweep,
    CartTimer,
    Commit,
    Position,
    Progress,
    ProgressLost,
)
from feature_store.customers import Customer, CustomerKey
from feature_store.keys import CustomerKeys
from feature_store.reads import ProfileReader
from feature_store.store import FeatureStore, ModelTelemetry, StoreLimits

__all__ = ["AppliedBatch", "AppliedEvent", "CartSweep", "CartTimer", "Commit", "Customer",
           "CustomerKey", "CustomerKeys", "FeatureStore", "ModelTelemetry", "Position",
           "ProfileReader", "Progress", "ProgressLost", "StoreLimits"]
