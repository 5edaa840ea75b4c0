"""A running worker checkpoints its models from a forked child; restarts restore them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents.checkpoints import CheckpointStore
from online_models.checkpoint import ModelBundle
from tests.unit.support import feed


def store(tmp_path: Path, worker: str = "w0") -> CheckpointStore:
    return CheckpointStore(directory=tmp_path, app_id="app", worker_name=worker)


def test_background_checkpoint_is_restored_with_the_same_models(tmp_path: Path) -> None:
    """Verify that the forked child writes the bundle as it was and a restart loads it."""
    bundle = ModelBundle()
    feed(bundle, days=10, seed=3)

    path = asyncio.run(store(tmp_path).save_in_background(bundle))

    assert path is not None and path.exists()
    restored = store(tmp_path).load_latest()
    assert restored is not None
    assert restored.version == bundle.version
    assert restored.metrics() == bundle.metrics()


def test_a_new_worker_takes_over_from_the_fleet(tmp_path: Path) -> None:
    """Verify that a worker without checkpoints of its own restores the newest of its app."""
    bundle = ModelBundle()
    feed(bundle, days=5, seed=4)
    asyncio.run(store(tmp_path, "w0").save_in_background(bundle))

    restored = store(tmp_path, "w1").load_latest()

    assert restored is not None and restored.version == bundle.version


def test_a_failed_child_reports_none_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """Verify that a checkpoint that cannot be written leaves the last good one the newest."""
    bundle = ModelBundle()
    feed(bundle, days=5, seed=5)
    good = asyncio.run(store(tmp_path).save_in_background(bundle))
    version = bundle.version
    feed(bundle, days=1, seed=6, start_day=5)
    bundle.anomaly.unpicklable = lambda: None  # type: ignore[attr-defined]

    assert asyncio.run(store(tmp_path).save_in_background(bundle)) is None

    assert sorted(good.parent.glob("*.ckpt")) == [good]  # type: ignore[union-attr]
    restored = store(tmp_path).load_latest()
    assert restored is not None and restored.version == version
