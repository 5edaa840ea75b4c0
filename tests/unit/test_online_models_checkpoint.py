"""Checkpoints restore every model exactly."""

from __future__ import annotations

import pytest

from online_models.checkpoint import CheckpointError, ModelBundle, read_header
from online_models.features import DAY_MS, behaviour_vector
from tests.unit.support import feed


def predictions(bundle: ModelBundle, profiles: dict[str, dict], now: int) -> list[object]:
    out: list[object] = []
    for cid, profile in sorted(profiles.items()):
        probability, explanation = bundle.churn.predict(bundle.churn.featurize(profile, now))
        out += [probability, explanation.top(3), bundle.clv.predict(profile, now)]
        out.append(bundle.segments.assign("default", behaviour_vector(profile)))
        out.append(bundle.recommender.top_n(cid, 10, recent=profile["recent_products"]))
    out.append(bundle.segments.of("default").labels())
    out.append(bundle.sentiment.score("the box arrived broken, not great"))
    out.append(bundle.anomaly.score(900.0, 3, history=[50.0, 60.0, 55.0]))
    out.append(bundle.anomaly.score(900.0, 3))
    out.append(bundle.forecast.forecast("default", "day", 14))
    out.append(bundle.forecast.forecast("default", "hour", 48, category="music"))
    out.append(bundle.triage.probabilities("the zip broke, charged twice"))
    out.append(bundle.drift.metrics_dict())
    return out


def test_checkpoint_restore_gives_identical_predictions_and_learning() -> None:
    """Verify that a restored bundle predicts exactly like the original and keeps learning alike."""
    bundle = ModelBundle()
    profiles = feed(bundle, days=60, seed=1)
    restored = ModelBundle.from_bytes(bundle.to_bytes(created_at_ms=123))
    assert restored.version == bundle.version
    assert restored.metrics() == bundle.metrics()
    now = 60 * DAY_MS
    assert predictions(restored, profiles, now) == predictions(bundle, profiles, now)
    # Learning on after the restore (pending labels, RNG of negative sampling...) matches too.
    more = feed(bundle, days=20, seed=2, start_day=60)
    feed(restored, days=20, seed=2, start_day=60)
    assert predictions(restored, more, 80 * DAY_MS) == predictions(bundle, more, 80 * DAY_MS)


def test_header_is_readable_without_unpickling_and_versions_move() -> None:
    """Verify the header (format, created_at, counts) and that versions change as models learn."""
    bundle = ModelBundle()
    empty_version = bundle.version
    feed(bundle, days=5, seed=3)
    header = read_header(bundle.to_bytes(created_at_ms=42))
    assert header["format_version"] == 3
    assert header["created_at_ms"] == 42
    assert header["example_counts"]["recommendations"] == 100
    assert header["version"] == bundle.version != empty_version
    assert header["model_versions"]["recommendations"] == "reco-v1+100"


def test_corrupt_or_foreign_bytes_are_refused() -> None:
    """Verify that bad magic and a payload not matching its checksum are refused."""
    data = ModelBundle().to_bytes(created_at_ms=0)
    with pytest.raises(CheckpointError):
        ModelBundle.from_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        ModelBundle.from_bytes(data[:-10] + bytes(10))
