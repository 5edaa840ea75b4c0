"""Python's cyclic garbage collector, set for a process that holds big models and works in
batches (the worker and its recommender process).

CPython frees almost everything by reference counting; the cyclic collector only finds
reference cycles. It runs a young collection every 700 net new container objects and, every
hundred or so of those, a full one over every object the process holds, models and loaded
libraries included. A worker batch allocates tens of thousands of short-lived objects
(decoded events, updates, score records) that are alive while the batch runs: with the
default threshold they survive young collections mid-batch, are promoted, and the promotions
trigger full collections. Measured in process (``load_tests.bench_pipeline``'s full batch,
60,000 simulated events): the collector took 17-22 µs per event, 15-20% of the batch, nearly
all of it in full collections of about 150 ms each; with a young threshold of 20,000 it took
about 1 µs per event. In batches of 2,000 (the default), young collections at 20,000 still
took 2.5-3 µs per event, at 50,000 about 1.

So a long-lived process, once its models are loaded:

* collects once and freezes what it holds (``gc.freeze``): the code, the libraries and the
  restored models are never scanned again, and a fork (the worker checkpoints in a forked
  child, see :mod:`agents.checkpoints`) does not copy pages just to update their GC headers;
* raises the young threshold to :data:`YOUNG_THRESHOLD`, above what one batch holds at once,
  so a batch's objects die young instead of being promoted. Cycles are still collected, a
  little later; the memory this can hold back is bounded by the threshold.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_for_batches"]

#: Net new container objects between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


def tune_for_batches() -> None:
    """Freeze what the process holds now and raise the young threshold (see the module)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
