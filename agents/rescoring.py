"""Re-score customers who have gone quiet, so churn risk rises as silence grows.

A customer's scores are written when their own events arrive; a customer who stops buying
sends no events, and their stored churn probability would stay as low as on their last visit.
So the worker re-scores, at its watermark (event time: a replay of last year sweeps last
year's "now"), the customers of the partitions it owns, those scored longest ago first, with
the very function a batch scores with (:func:`online_models.score_customer`).

Each tick takes, per partition, enough customers that every one is re-scored within
``target_lag_s`` of wall time (a sweep that could not keep up shows in the scores'
``scored_at``), never fewer than a small chunk; a tick holds the event loop while it scores, so
ticks are frequent and small rather than rare and long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from agents.models import score_record
from feature_store import FeatureStore
from online_models import ModelBundle, model_statuses, score_customer, scoring_time

log = logging.getLogger(__name__)


class SilenceSweep:
    """Re-scores the customers of the worker's partitions at its watermark."""

    def __init__(self, *, store: FeatureStore, bundle: ModelBundle,
                 scored_since_sweep: set[tuple[str, str]], interval_s: float = 0.5,
                 target_lag_s: float = 60.0, smallest_chunk: int = 50,
                 largest_chunk: int = 5000) -> None:
        self.store = store
        self.bundle = bundle
        # Customers a batch scored while a tick was reading: the tick leaves them alone.
        self.scored_since_sweep = scored_since_sweep
        self.interval_s = interval_s
        self.target_lag_s = target_lag_s
        self.smallest_chunk = smallest_chunk
        self.largest_chunk = largest_chunk

    async def tick(self, partitions: Iterable[int], watermark_ms: int) -> int:
        """Re-score the customers of ``partitions`` due at ``watermark_ms``; returns how
        many were written."""
        self.scored_since_sweep.clear()
        due = await self.store.due_for_rescoring(
            partitions, watermark_ms, interval_s=self.interval_s,
            target_lag_s=self.target_lag_s, smallest=self.smallest_chunk,
            largest=self.largest_chunk)
        if not due:
            return 0
        bundle = self.bundle
        statuses = model_statuses(bundle)
        version = bundle.version
        records = [
            score_record(customer.tenant, customer.customer_id,
                         score_customer(bundle, customer.tenant, customer.profile,
                                        scoring_time(customer.profile, watermark_ms), statuses),
                         previous_segment=customer.previous_segment, model_version=version,
                         partition=customer.partition)
            for customer in due
            if (customer.tenant, customer.customer_id) not in self.scored_since_sweep
        ]
        await self.store.write_scores(records)
        return len(records)
