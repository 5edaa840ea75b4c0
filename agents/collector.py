"""Keep the garbage collector's full passes off the alert path, and its young passes rare.

A worker's models are a few hundred thousand long-lived Python objects, and every full
(generation 2) collection walks all of them while the event loop waits. Measured at 1,000
events/s with ``gc.callbacks``: about three full passes a minute, up to 150 ms each, and every
alert in flight waits them out. With the schedule here the same run made no full pass.

- Young passes wait for :data:`YOUNG_THRESHOLD` new objects instead of 700. A batch's
  objects (decoded events, updates, score records) live while the batch runs: at 700 they
  were promoted mid-batch, and the promotions brought the full passes on. Measured in process
  over 60,000 simulated events (``load_tests.bench_pipeline``'s full batch, batches of 500):
  the collector took 17-22 µs of each event's ~120 µs, almost all in full passes of ~150 ms;
  at 20,000 about 1 µs. In batches of 2,000, 20,000 still cost 2.5-3 µs and 50,000 about 1.
  Cycles are still collected, a little later; what that holds back is bounded by the
  threshold.
- Once its models are loaded, a process freezes what it holds (:func:`freeze_loaded_models`):
  the code, the libraries and the restored models are never walked again.
- Right before each checkpoint's fork the worker freezes what is alive (``gc.freeze``, as
  Python advises for processes that fork): those objects move to a permanent generation that
  collections skip, and the child's collector leaves the parent's pages alone.
- Full passes wait for 100 generation-1 passes instead of 10. Once the models are frozen the
  "long-lived objects grew by a quarter" condition that normally spaces full passes out is
  met almost at once, so without this they would run ten times as often (if each is short).
- A frozen object that later dies in a reference cycle is not reclaimed while frozen, so
  every ``thaw_every`` checkpoints everything is thawed and collected once: one full pause
  per ``thaw_every`` checkpoints (10 minutes by default) instead of about 30.
- While the checkpoint child lives, the worker makes no collections at all. Every page the
  parent writes to is copied first while the child shares it, and a collection writes to
  each object it visits: young objects sit in free slots all over the heap, so a young pass
  copied pages by the thousand. Measured at 2,000 events/s with the child alive 1-3 s:
  generation-0 passes of 5-25 ms and generation-1 passes of 40-120 ms, against under 5 ms
  otherwise. What the pause leaves uncollected (cycles made in those seconds) waits for the
  next pass.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: Generation-1 collections between two full collections (Python's default is 10).
FULL_PASS_AFTER = 100
#: Net new container objects between young collections (Python's default is 700).
YOUNG_THRESHOLD = 50_000


def configure_worker_process() -> None:
    """Young passes rarer (:data:`YOUNG_THRESHOLD`), full passes spaced out
    (:data:`FULL_PASS_AFTER`); for the worker and its recommender process."""
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, FULL_PASS_AFTER)


def freeze_loaded_models() -> None:
    """Collect once and freeze what the process holds, its models just loaded: collections
    skip it from now on (the worker thaws it every ``thaw_every`` checkpoints)."""
    gc.collect()
    gc.freeze()


class CollectorSchedule:
    """When to freeze and when to thaw, driven by the worker's checkpoints."""

    def __init__(self, *, thaw_every: int = 20) -> None:
        self.thaw_every = thaw_every
        self.freezes = 0

    def before_fork(self) -> None:
        """Freeze what is alive now; every ``thaw_every`` calls, thaw and collect first."""
        self.freezes += 1
        if self.freezes % self.thaw_every == 0:
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            log.info("full collection after thawing: %d objects freed in %.0f ms",
                     freed, (time.perf_counter() - started) * 1000)
        gc.freeze()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No collections inside (while a forked child shares this process's pages); the
        collector's previous state after."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()
