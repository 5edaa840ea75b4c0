"""What one worker holds besides its Faust app: the batch's steps, wired from the settings,
and the work of its timers (telemetry, recommendation lists, erasure, checkpoints)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from typing import Any

from agents.alert_config import AlertConfigWatcher
from agents.batch import Worker
from agents.checkpoints import CheckpointStore
from agents.collector import CollectorSchedule
from agents.models import ModelStep
from agents.partitions import Partitions
from agents.publishing import AlertPublisher
from agents.recommending import RecommendationWork, RecommenderProcess
from agents.rescoring import SilenceSweep
from agents.rules import AlertRules
from agents.segment_sharing import SegmentSharing
from feature_store import Commit, FeatureStore, ModelTelemetry, StoreLimits
from feature_store.client import connect
from online_models import ChurnModel, ModelBundle, Recommender
from schemas.topics import CLICKS, PURCHASES
from stream.deadletters import DeadLetterPublisher
from stream.rereads import PartitionReader
from stream.settings import Settings

log = logging.getLogger(__name__)

#: The shortest lease on fitting a tenant's segments (three telemetry ticks if longer): how
#: long the tenant's segments go unfitted after their worker died without giving it up.
SEGMENTS_LEASE_S = 15.0


def new_bundle(settings: Settings) -> ModelBundle:
    return ModelBundle(churn=ChurnModel(horizon_days=settings.churn_horizon_days,
                                        min_examples=settings.churn_min_examples))


class WorkerRuntime:
    """Built lazily inside the worker's event loop (the store's client binds to the loop)."""

    def __init__(self, settings: Settings, *, checkpoint_phase_s: float = 0.0,
                 share_segments: bool = False) -> None:
        """``share_segments``: fit a tenant's segments only while this worker holds the
        tenant's lease, and take the holder's otherwise (:mod:`agents.segment_sharing`), as
        workers do; without it (a benchmark driving the batch function), fit them here."""
        self.settings = settings
        # No per-reply socket timeout (see feature_store.client.connect): the agents and
        # timers bound each batch, erasure and tick with ``settings.redis_deadline_s``.
        self.store = FeatureStore(
            redis=connect(settings.redis_url, cluster=settings.redis_cluster,
                          socket_timeout=None),
            limits=StoreLimits(max_event_ids=settings.dedupe_ids_per_customer),
            wait_replicas=settings.redis_wait_replicas)
        worker_name = self.worker_name = settings.worker_name or socket.gethostname()
        self.checkpoints = CheckpointStore(
            directory=settings.checkpoint_dir, app_id=settings.app_id, worker_name=worker_name)
        self.bundle = self.checkpoints.load_latest() or new_bundle(settings)
        self.recommender: RecommenderProcess | None = None
        if settings.recommender_process:
            # Its checkpoints half an interval after the worker's: never both at once.
            self.recommender = RecommenderProcess(
                settings, worker_name, checkpoint_phase_s=(
                    checkpoint_phase_s + settings.checkpoint_interval_s / 2
                ) % settings.checkpoint_interval_s)
            # The process holds (and checkpoints) the real one; the bundle's stays empty.
            self.bundle.recommender = Recommender()
        config = AlertConfigWatcher(settings.alerts_config)
        config.install_sighup_handler(asyncio.get_running_loop())
        self.worker = Worker(
            store=self.store,
            partitions=Partitions(
                allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
                activity_topics=frozenset(settings.topic(name) for name in (CLICKS, PURCHASES))),
            dead_letters=DeadLetterPublisher(settings=settings),
            models=ModelStep(bundle=self.bundle),
            rules=AlertRules(config=config, clicks_topic=settings.topic(CLICKS),
                             purchases_topic=settings.topic(PURCHASES)),
            alerts=AlertPublisher(settings=settings),
            max_event_bytes=settings.max_event_bytes,
            lists_in_worker=self.recommender is None,
            rereads=PartitionReader(settings=settings))
        self.models = self.worker.models
        self.sweep = SilenceSweep(store=self.store, bundle=self.bundle,
                                  lock=self.worker.scores_lock,
                                  rules=self.worker.rules, alerts=self.worker.alerts,
                                  interval_s=settings.rescore_interval_s)
        self._last_sample = (time.monotonic(), 0)
        self.collector = CollectorSchedule()
        # The lease holder is this process: two workers left with one name (the hostname,
        # on one host) must still not both fit.
        self.segment_sharing = SegmentSharing(
            store=self.store, segments=self.bundle.segments,
            worker=f"{worker_name}/{uuid.uuid4().hex[:8]}",
            lease_ms=int(1000 * max(SEGMENTS_LEASE_S, 3 * settings.telemetry_interval_s))
        ) if share_segments else None

    def batch_failed(self) -> None:
        """A batch failed part way (Redis went away): what this worker read of it that may
        not be in Redis is forgotten, for its retry to read again."""
        self.worker.partitions.forget()

    async def checkpoint(self) -> None:
        """The final checkpoint of a stopping worker: serialise in the loop (the models are
        not thread-safe; nothing waits on the loop any more), write in a thread, while the
        recommender process checkpoints and stops."""
        loop = asyncio.get_running_loop()
        stopped = (loop.run_in_executor(None, self.recommender.stop)
                   if self.recommender is not None else None)
        data = self.bundle.to_bytes()
        path = await loop.run_in_executor(None, self.checkpoints.save, data)
        if stopped is not None:
            await stopped
        log.info("checkpointed %s to %s (%d bytes)", self.bundle.version, path, len(data))

    async def checkpoint_in_background(self) -> None:
        """The periodic checkpoint of a running worker, written by a forked child so the
        loop never stalls on serialising the models (see :mod:`agents.checkpoints`). The
        checkpoint task waits for each before it starts the next, so children never overlap,
        and no collections run meanwhile (see :mod:`agents.collector`)."""
        version = self.bundle.version
        self.collector.before_fork()
        with self.collector.paused():
            path = await self.checkpoints.save_in_background(self.bundle)
        if path is not None:
            log.info("checkpointed %s to %s", version, path)

    async def publish_telemetry(self, lag: int | None) -> None:
        """Model versions and online metrics, segments, and throughput, for the API and the
        dashboard."""
        models = model_telemetry(
            self.bundle, self.recommender.report() if self.recommender is not None else None)
        if self.segment_sharing is not None:
            await self.segment_sharing.sync(self.tenants())
        else:
            for tenant in sorted(self.tenants()):
                await self.publish_segments(tenant)
        await self.store.publish_forecasts(
            self.worker_name, self.models.insights.forecast_payloads(),
            at_ms=int(time.time() * 1000))
        started, processed = self._last_sample
        elapsed = max(time.monotonic() - started, 1e-3)
        rate = (self.worker.processed - processed) / elapsed
        self._last_sample = (time.monotonic(), self.worker.processed)
        await self.store.publish_telemetry(models, at_ms=int(time.time() * 1000),
                                           events_per_s=rate, lag=lag)

    async def write_due_recommendations(self) -> None:
        """The recommendations tick: the recommender's work of the batches since the last
        tick (their interactions, the lists due) handed to its process in one piece; or,
        without one, the lists still due with no batch to carry them made here (the batch
        makes a few with each commit; see ModelStep.lists_in_worker)."""
        if self.recommender is not None:
            self.recommender.submit(self.models.take_recommendation_work())
            return
        if self.models.lists_due:
            await self.store.commit(Commit(recommendation_lists=self.models.lists_in_worker()))

    async def publish_segments(self, tenant: str) -> None:
        """The tenant's segments for the API, with their sizes now (by the worker that fits
        them, when workers share them)."""
        if self.segment_sharing is not None:
            await self.segment_sharing.publish(tenant)
            return
        for segments_of, segments in self.models.segment_summaries({tenant}).items():
            await self.store.publish_segments(
                segments_of, segments, segmenter=self.bundle.segments.identity(segments_of))

    async def take_up_segments(self) -> None:
        """Before the first batch: fit, or take the fit of, every tenant's segments known in
        Redis, so that this worker's first scores are in the segments the others serve (a
        worker joining, or back from a restart, would otherwise score with none, or with
        its checkpoint's, until its first telemetry tick)."""
        if self.segment_sharing is not None:
            await self.segment_sharing.sync(await self.store.tenants())

    async def release_segments(self) -> None:
        """A stopping worker gives up fitting its tenants' segments: another takes over at
        once."""
        if self.segment_sharing is not None:
            await self.segment_sharing.release()

    def tenants(self) -> set[str]:
        """The tenants this worker has seen events of."""
        return self.models.tenants_seen

    async def erase(self, tenant: str, customer_id: str, *, block_seconds: float,
                    receipt_id: str) -> None:
        """Erasure: every key of the customer, then what the models keep of them."""
        await self.store.erase(tenant=tenant, customer_id=customer_id,
                               block_seconds=block_seconds, receipt_id=receipt_id)
        self.models.forget(tenant, customer_id)
        await self.publish_segments(tenant)
        if self.recommender is not None:
            self.recommender.submit(RecommendationWork(erased=[(tenant, customer_id)]))


def model_telemetry(bundle: ModelBundle, recommender: Any = None) -> list[ModelTelemetry]:
    """Each model's version, examples and metrics (``drifted_at`` among them) as the API's
    ``/v1/models`` shows them; ``recommender``: the recommender process's report, if any."""
    versions = bundle.model_versions()
    counts = bundle.example_counts()
    metrics = bundle.metrics()
    if recommender is not None:
        versions["recommendations"] = recommender.model_version
        counts["recommendations"] = recommender.example_count
        metrics["recommendations"] = {**recommender.metrics,
                                      "drifted_at": metrics["recommendations"]["drifted_at"]}
    return [ModelTelemetry(name=name, version=version, example_count=counts.get(name, 0),
                           metrics=_numbers(metrics.get(name, {})),
                           details=_plain(metrics.get(name, {})))
            for name, version in versions.items()]


def _numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of a model (the API's and the dashboard's charts plot these)."""
    return {name: _plain(value) for name, value in metrics.items()
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool))}


def _plain(value: Any) -> Any:
    """Metrics as JSON-safe numbers (NaN and infinities become null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value
