"""The Redis feature store: key layout, atomic idempotent updates (Lua), reads for the API."""

from feature_store.keys import CustomerKeys
from feature_store.reads import ProfileReader
from feature_store.store import Applied, FeatureStore, StoreLimits

__all__ = ["Applied", "CustomerKeys", "FeatureStore", "ProfileReader", "StoreLimits"]
