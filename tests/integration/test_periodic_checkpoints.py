"""A running worker checkpoints its models every interval, in the background, from a phase of
its own: workers started together do not all fork at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

from stream.processes import ManagedProcess
from stream.settings import Settings

DEADLINE_S = 90.0


def checkpoint_times(folder: Path, kind: str) -> list[float]:
    """When each checkpoint of ``kind`` was written (its name holds the time in ns)."""
    return sorted(int(path.stem.split("-")[1]) / 1e9 for path in folder.glob(f"*/{kind}-*.ckpt"))


def test_a_running_worker_checkpoints_its_models_and_recommender_every_interval(
        settings: Settings, start_worker: Callable[..., ManagedProcess]) -> None:
    start_worker(checkpoint_interval_s=2.0)
    folder = settings.checkpoint_dir / settings.app_id

    deadline = time.monotonic() + DEADLINE_S
    while len(checkpoint_times(folder, "models")) < 3 or not checkpoint_times(
            folder, "recommender"):
        assert time.monotonic() < deadline, "no periodic checkpoints"
        time.sleep(0.2)

    models = checkpoint_times(folder, "models")
    gaps = [later - earlier for earlier, later in pairwise(models)]
    # The interval after the previous checkpoint finished; an idle worker's child is quick.
    assert all(2.0 <= gap < 6.0 for gap in gaps), gaps
