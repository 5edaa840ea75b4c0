"""Model checkpoints on disk: versioned files, written atomically, the newest restored.

Each worker writes under ``<checkpoint_dir>/<app_id>/<worker_name>/``; a restarted worker
resumes from its own newest checkpoint, or from the newest of any worker of the app when it
has none (a new replica takes over from the fleet). Only the last few files are kept. The
files of one kind share a name prefix: ``models-`` for the bundle, ``recommender-`` for the
recommender, which learns in a process of its own (see :mod:`agents.recommending`).

Serialising the models takes a busy worker's event loop 100-300 ms (and grows with the
number of customers), which would stall every alert behind it. :meth:`CheckpointStore.
save_in_background` therefore forks, as Redis's BGSAVE does: the child pickles a copy-on-write
snapshot of the models and writes the file while the parent's loop goes on consuming. The
child runs at a lower CPU priority, so on a busy machine the workers' batches go first while
it serialises. (The fork stalls the loop 6-10 ms at 250 MB; the child serialises for about
0.4 s. In the alert benchmark, alternated runs with and without the lower priority differed
by no more than noise.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from online_models import CheckpointError, ModelBundle, read_header
from stream.processes import run_in_background

log = logging.getLogger(__name__)

KEEP = 3
#: How much lower a checkpoint child's CPU priority is than its worker's.
CHILD_NICE = 10

T = TypeVar("T")


class CheckpointStore:
    def __init__(self, *, directory: Path, app_id: str, worker_name: str,
                 kind: str = "models") -> None:
        self.app_dir = directory / app_id
        self.directory = self.app_dir / worker_name
        self.kind = kind

    def save(self, data: bytes) -> Path:
        """Write one checkpoint of this store's kind (bytes from :meth:`ModelBundle.to_bytes`
        or :func:`online_models.encode_checkpoint`) atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.kind}-{time.time_ns()}.ckpt"
        partial = path.with_suffix(".partial")
        with partial.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(path)
        for old in sorted(self.directory.glob(f"{self.kind}-*.ckpt"))[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    async def save_in_background(self, bundle: ModelBundle) -> Path | None:
        """Checkpoint ``bundle`` from a forked child and wait for it without blocking the loop.

        Forking happens between two callbacks of the loop, so the snapshot is of models that
        no batch is halfway through teaching. The child only serialises, writes and exits
        (``os._exit``: no atexit handlers, no flushing the parent's buffers, no touching its
        sockets). Returns the path written, or None if the child failed (it logs why to
        stderr; the previous checkpoint stays the newest). Where there is no ``fork``, the
        models are serialised in the loop instead.

        While the child lives, every page the parent writes to is copied first, so the
        worker makes no collections meanwhile (:mod:`agents.collector` has the figures) and
        workers checkpoint at phases of their own (:mod:`agents.app`), not all at once.
        """
        if not hasattr(os, "fork"):  # pragma: no cover - Windows
            return self.save(bundle.to_bytes())
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            os.close(read_end)
            status = 1
            try:
                # Serialising takes a core for a while: let the workers' batches go first
                # (also when the worker runs at real-time priority).
                run_in_background(CHILD_NICE)
                path = self.save(bundle.to_bytes())
                os.write(write_end, os.fsencode(path))
                status = 0
            except BaseException:
                traceback.print_exc(file=sys.stderr)
            finally:
                os._exit(status)
        os.close(write_end)
        loop = asyncio.get_running_loop()
        _, wait_status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        with os.fdopen(read_end, "rb") as reader:
            written = reader.read()
        if os.waitstatus_to_exitcode(wait_status) != 0 or not written:
            log.error("checkpoint child %d failed (status %d)", pid, wait_status)
            return None
        return Path(os.fsdecode(written))

    def load_latest(self) -> ModelBundle | None:
        """The newest readable bundle: this worker's first, then any worker's of the app."""
        return self.load_newest(ModelBundle.from_bytes)

    def load_newest(self, decode: Callable[[bytes], T]) -> T | None:
        """The newest readable checkpoint of this store's kind, decoded: this worker's
        first, then any worker's of the app."""
        pattern = f"{self.kind}-*.ckpt"
        own = sorted(self.directory.glob(pattern), reverse=True)
        fleet = sorted(self.app_dir.glob(f"*/{pattern}"), key=lambda p: p.name, reverse=True)
        for path in [*own, *fleet]:
            try:
                data = path.read_bytes()
                model = decode(data)
            except (OSError, CheckpointError) as error:
                log.warning("skipping unreadable checkpoint %s: %s", path, error)
                continue
            header = read_header(data)
            log.info("restored %s from %s (%s, examples %s)", self.kind, path,
                     header.get("version"), header.get("example_counts"))
            return model
        return None
