"""Re-score customers who have gone quiet, so churn risk rises as silence grows.

A customer's scores are written when their own events arrive; a customer who stops buying
sends no events, and their stored churn probability would stay as low as on their last visit.
So the worker re-scores, at its watermark (event time: a replay of last year sweeps last
year's "now"), the customers of the partitions it owns, those scored longest ago first, with
the very function a batch scores with (:func:`online_models.score_customer`).

Each tick takes, per partition, enough customers that every one is re-scored within
``target_lag_s`` of wall time (45 s, a margin under the 60 s promised; a sweep that could not
keep up shows in the scores' ``scored_at``), never fewer than a small chunk; a tick holds the
event loop while it scores, so ticks are frequent and small rather than rare and long.

A tick and a batch take turns (the worker's ``scores_lock``), each from reading its customers
to writing them: otherwise a tick that read a customer while a batch had them in hand wrote
their scores from before the batch over the batch's, and counted silence for a customer who
had just come back.

When the models learn and the watermark does not move (a replay that has ended, a shop
asleep at night), nobody is behind the watermark, yet some stored scores were made with the
models of before: a **refresh** pass then goes through the worker's indexes, a chunk per
index per tick, and re-scores at the same watermark each customer whose stored scores carry
another :attr:`~online_models.ModelBundle.scores_version` than the models', so what is
served is the models' current word. A worker starts with a refresh too (its checkpoint may
be older than the scores stored). A refresh does not count towards the churn rule: no more
silence has passed.

Each re-score by the watermark also counts towards the churn rule
(:func:`agents.alert_rules.churn_in_silence`): most churners simply stop coming, and only the
sweep sees their risk rise. Its alerts are published before the customers' rule state is
saved, so a crash in between repeats an alert (with the same id: its trigger is the silence
since the customer's last activity) rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from agents.alert_rules import Outcome, churn_in_silence
from agents.publishing import AlertPublisher, AlertPublishError
from agents.rules import ALERTS_SUPPRESSED, AlertRules
from agents.score_records import score_record
from feature_store import Commit, FeatureStore
from feature_store.rule_state import CustomerAlertState
from feature_store.scores import DueCustomer, chunk_for
from online_models import ModelBundle, model_statuses, score_customer, scoring_time
from schemas.records import Alert

log = logging.getLogger(__name__)


class SilenceSweep:
    """Re-scores the customers of the worker's partitions at its watermark."""

    def __init__(self, *, store: FeatureStore, bundle: ModelBundle,
                 lock: asyncio.Lock | None = None, rules: AlertRules | None = None,
                 alerts: AlertPublisher | None = None, interval_s: float = 0.5,
                 target_lag_s: float = 45.0, smallest_chunk: int = 50,
                 largest_chunk: int = 5000) -> None:
        self.store = store
        self.bundle = bundle
        self.rules = rules
        self.alerts = alerts
        #: Taken by each tick and by each batch (the worker's ``scores_lock``): a customer
        #: read by one is written by it before the other reads them.
        self.lock = lock or asyncio.Lock()
        self.interval_s = interval_s
        self.target_lag_s = target_lag_s
        self.smallest_chunk = smallest_chunk
        self.largest_chunk = largest_chunk
        self._last_tick: float | None = None
        #: The scores_version the last tick saw, and whether the models changed since the
        #: last refresh pass began. A worker starts with one pass: scores stored after the
        #: checkpoint it restored came from lessons it no longer has.
        self._scores_version = bundle.scores_version
        self._models_changed = True
        #: The refresh pass under way: per (tenant, partition) index, the rank it reached
        #: and the index's size when the pass began.
        self._refresh: dict[tuple[str, int], tuple[int, int]] = {}

    async def tick(self, partitions: Iterable[int], watermark_ms: int) -> int:
        """Re-score the customers of ``partitions`` due at ``watermark_ms``; returns how
        many were written."""
        # Chunks sized on the time ticks really take to come round: a worker busy with
        # batches runs its timers late, and chunks sized on the nominal interval then fall
        # behind (CDNOW's 23,570 customers: 68 s to re-score on a 60 s target).
        wall = time.monotonic()
        interval = self.interval_s if self._last_tick is None else min(
            max(self.interval_s, wall - self._last_tick), 10 * self.interval_s)
        self._last_tick = wall
        async with self.lock:
            version = self.bundle.scores_version
            if version != self._scores_version:
                self._scores_version, self._models_changed = version, True
            partitions = sorted(set(partitions))
            due = await self.store.due_for_rescoring(
                partitions, watermark_ms, interval_s=interval,
                target_lag_s=self.target_lag_s, smallest=self.smallest_chunk,
                largest=self.largest_chunk)
            if due:
                return await self._rescore(due, watermark_ms, silence_counts=True)
            if self._models_changed and not self._refresh:
                self._models_changed = False
                self._refresh = {index: (0, size) for index, size
                                 in (await self.store.scoring_indexes(partitions)).items()}
            if not self._refresh:
                return 0
            behind = [customer for customer in await self._refresh_chunk(partitions, interval)
                      if customer.scores_version != version]
            return await self._rescore(behind, watermark_ms, silence_counts=False)

    async def _refresh_chunk(self, partitions: list[int], interval_s: float
                             ) -> list[DueCustomer]:
        """The refresh pass's next customers: a chunk of each index still to go, sized like
        the sweep's so a pass takes about ``target_lag_s``."""
        chunk: list[DueCustomer] = []
        for index, (rank, size) in list(self._refresh.items()):
            tenant, partition = index
            count = chunk_for(size, size, interval_s=interval_s, target_lag_s=self.target_lag_s,
                              smallest=self.smallest_chunk, largest=self.largest_chunk)
            held, customers = (0, []) if partition not in partitions else \
                await self.store.scored_customers(tenant, partition, start=rank, count=count)
            chunk.extend(customers)
            if held < count:  # the end of the index (or a partition no longer ours)
                del self._refresh[index]
            else:
                self._refresh[index] = (rank + held, size)
        return chunk

    async def _rescore(self, due: list[DueCustomer], watermark_ms: int, *,
                       silence_counts: bool) -> int:
        """Score ``due`` at the watermark and write it; with ``silence_counts``, the churn
        rule sees each re-score (and its alerts are published); returns how many were
        written."""
        if not due:
            return 0
        bundle = self.bundle
        statuses = model_statuses(bundle)
        version, versions = bundle.scores_version, bundle.model_versions()
        records = []
        states: dict[tuple[str, str], CustomerAlertState] = {}
        alerts: list[Alert] = []
        suppressed: dict[str, int] = {}
        now = datetime.now(UTC)
        config = self.rules.config if self.rules is not None and silence_counts else None
        for customer in due:
            key = (customer.tenant, customer.customer_id)
            scores = score_customer(bundle, customer.tenant, customer.profile,
                                    scoring_time(customer.profile, watermark_ms), statuses)
            record = score_record(customer.tenant, customer.customer_id, scores,
                                  previous_segment=customer.previous_segment,
                                  model_version=version, partition=customer.partition)
            records.append(record)
            if config is None or scores.churn_probability is None:
                continue
            state = customer.rule_state
            streak, armed = state.churn_streak, state.churn_armed
            decision = churn_in_silence(
                tenant=customer.tenant, customer_id=customer.customer_id,
                scores={"churn_probability": scores.churn_probability,
                        "churn_explanation": record.churn_explanation,
                        "model_versions": versions},
                features=customer.profile, state=state, config=config,
                scored_at_ms=scores.scored_at_ms, now=now)
            if decision is not None and decision.publish:
                alerts.append(decision.alert)
            elif decision is not None and decision.outcome is Outcome.SUPPRESSED_CONSENT:
                suppressed["churn_risk"] = suppressed.get("churn_risk", 0) + 1
                ALERTS_SUPPRESSED.labels(kind="churn_risk", reason="consent").inc()
            if (decision is not None or (state.churn_streak, state.churn_armed)
                    != (streak, armed)):
                states[key] = state
        await self.store.write_scores(records)
        if alerts and self.alerts is not None:
            try:
                # An earlier batch's alerts the broker refused go out too: into the feed.
                alerts += await self.alerts.publish(alerts)
            except AlertPublishError as error:  # decided again, the same, on a later tick
                log.warning("silence alerts not published, retried later: %s", error)
                return len(records)
        if states or alerts:
            await self.store.commit(Commit(rule_states=states, feed=alerts,
                                           suppressed=suppressed))
        return len(records)
