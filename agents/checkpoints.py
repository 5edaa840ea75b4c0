"""Model checkpoints on disk: versioned files, written atomically, the newest restored.

Each worker writes under ``<checkpoint_dir>/<app_id>/<worker_name>/``; a restarted worker
resumes from its own newest checkpoint, or from the newest of any worker of the app when it
has none (a new replica takes over from the fleet). Only the last few files are kept.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from online_models import CheckpointError, ModelBundle, read_header

log = logging.getLogger(__name__)

KEEP = 3


class CheckpointStore:
    def __init__(self, *, directory: Path, app_id: str, worker_name: str) -> None:
        self.app_dir = directory / app_id
        self.directory = self.app_dir / worker_name

    def save(self, data: bytes) -> Path:
        """Write one checkpoint (bytes from :meth:`ModelBundle.to_bytes`) atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"models-{time.time_ns()}.ckpt"
        partial = path.with_suffix(".partial")
        with partial.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(path)
        for old in sorted(self.directory.glob("models-*.ckpt"))[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> ModelBundle | None:
        """The newest readable checkpoint: this worker's first, then any worker's of the app."""
        own = sorted(self.directory.glob("models-*.ckpt"), reverse=True)
        fleet = sorted(self.app_dir.glob("*/models-*.ckpt"), key=lambda p: p.name, reverse=True)
        for path in [*own, *fleet]:
            try:
                data = path.read_bytes()
                bundle = ModelBundle.from_bytes(data)
            except (OSError, CheckpointError) as error:
                log.warning("skipping unreadable checkpoint %s: %s", path, error)
                continue
            header = read_header(data)
            log.info("restored models from %s (%s, examples %s)", path, bundle.version,
                     header.get("example_counts"))
            return bundle
        return None
