"""What one worker holds besides its Faust app: store, pipeline, models, alerts, telemetry."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio.client import Pipeline

from agents.alert_state import CustomerAlertState
from agents.alerting import AlertEngine
from agents.checkpoints import CheckpointStore
from agents.collector import CollectorSchedule
from agents.pipeline import BatchResult, EventPipeline, LateWrites
from agents.recommending import RecommendationWork, RecommenderProcess
from agents.rescoring import SilenceSweep
from agents.scoring import ModelScorer, touched_customers
from feature_store.client import connect
from feature_store.keys import MODELS_HISTORY_KEY, MODELS_KEY, THROUGHPUT_KEY
from feature_store.model_inputs import ModelInputs, queue_model_inputs
from feature_store.store import FeatureStore, StoreLimits
from online_models import ChurnModel, ModelBundle, Recommender
from schemas.topics import CLICKS, PURCHASES
from stream.deadletters import DeadLetterPublisher
from stream.metrics import BATCH_STEPS
from stream.rereads import PartitionReader
from stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class CustomerReads:
    """The batch's customers as the models and the alert rules read them: profiles and
    rule states, queued behind the batch's updates in the round trip that applies them."""

    alerts: AlertEngine
    inputs: ModelInputs = field(default_factory=dict)
    states: dict[tuple[str, str], CustomerAlertState] = field(default_factory=dict)

    def queue(self, pipe: Pipeline, customers: Sequence[tuple[str, str]]
              ) -> Callable[[list[Any]], None]:
        read_inputs = queue_model_inputs(pipe, customers)
        read_states = self.alerts.queue_state_reads(pipe, customers)

        def take(replies: list[Any]) -> None:
            for customer in customers:  # read again: a stitch merged or deleted them
                self.inputs.pop(customer, None)
                self.states.pop(customer, None)
            self.inputs.update(read_inputs(replies))
            self.states.update(read_states(replies))

        return take


class ModelsAndAlerts:
    """After each batch's features: models learn and score, alert rules run, alerts go out.

    Two round trips to Redis of its own before the alerts go out (the profiles and the rule
    states came with the batch's updates): the scores written, then the rule state written
    as the due cart timers are read. Without a recommender process, the recommender's work
    is done here after that, and its lists written with the batch's progress, as is the
    alerts' feed; with one, the work waits for the worker's recommendations tick
    (:meth:`WorkerRuntime.write_due_recommendations`).
    """

    def __init__(self, *, scorer: ModelScorer, alerts: AlertEngine,
                 recommender: RecommenderProcess | None = None) -> None:
        self.scorer = scorer
        self.alerts = alerts
        self.recommender = recommender

    def batch_reads(self) -> CustomerReads:
        return CustomerReads(self.alerts)

    async def on_batch(self, result: BatchResult, pipeline: EventPipeline,
                       reads: CustomerReads) -> LateWrites:
        # A batch mixes topics: learn and alert in event-time order (stable for equal times).
        in_event_time = sorted(result.applied, key=lambda item: item[1].occurred_at_ms)
        # A redelivered event is judged again, so an alert it fired before a crash or a failed
        # round trip is repeated (same id), never lost. An event id the shop sent twice
        # counts once: its second message teaches nothing, scores nothing and alerts nothing.
        events = [(event, applied.profile_id, message.partition, applied.outcome == "ok")
                  for message, event, applied in in_event_time
                  if applied.outcome == "ok"
                  or (applied.outcome == "duplicate" and result.redelivered(message))]
        # Only these: an erased customer's events were read too (as nothing).
        touched = touched_customers(events)
        inputs = {customer: reads.inputs[customer] for customer in touched
                  if customer in reads.inputs}
        with BATCH_STEPS["models"].time():
            updates = await self.scorer.on_batch(events, pipeline.model_watermark(),
                                                 inputs=inputs)
        advanced = {(m.topic, m.partition) for m, _, _ in result.applied}
        watermarks = {key: mark for key in advanced
                      if (mark := pipeline.watermark(*key)) is not None}
        with BATCH_STEPS["alerts"].time():
            fired = await self.alerts.on_batch(updates, watermarks, states=reads.states)
        with BATCH_STEPS["publish"].time():
            feed = await self.alerts.publish_to_topic(fired)
        # Off the alerts' path, none waits on it: the alerts' feed goes out with the batch's
        # progress (they are on Kafka already), and so do the lists made here when the
        # recommender has no process of its own. A recommender process gets the work of
        # many batches at once, on the tick: a handover per batch (a liveness check, the
        # child's reports read, a queue put and its feeder thread's wake-up) cost the
        # batches about 7% of their CPU at 2,000 events/s.
        if self.recommender is not None:
            return feed
        lists = self.scorer.refresh_recommendations()

        def late_writes(pipe: Pipeline) -> None:
            feed(pipe)
            lists(pipe)

        return late_writes


def new_bundle(settings: Settings) -> ModelBundle:
    return ModelBundle(churn=ChurnModel(horizon_days=settings.churn_horizon_days,
                                        min_examples=settings.churn_min_examples))


class WorkerRuntime:
    """Built lazily inside the worker's event loop (redis.asyncio binds to the loop)."""

    def __init__(self, settings: Settings, *, checkpoint_phase_s: float = 0.0) -> None:
        self.settings = settings
        # No per-reply socket timeout (see feature_store.client.connect): the agents and
        # timers bound each batch, erasure and tick with ``settings.redis_deadline_s``.
        self.redis = connect(settings.redis_url, socket_timeout=None)
        self.store = FeatureStore(
            redis=self.redis, limits=StoreLimits(max_event_ids=settings.dedupe_ids_per_customer))
        worker_name = settings.worker_name or socket.gethostname()
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
        self.scorer = ModelScorer(store=self.store, bundle=self.bundle)
        self.alerts = AlertEngine(redis=self.redis, settings=settings)
        self.sweep = SilenceSweep(store=self.store, bundle=self.bundle,
                                  scored_since_sweep=self.scorer.scored_since_sweep,
                                  interval_s=settings.rescore_interval_s)
        self.pipeline = EventPipeline(
            store=self.store,
            dead_letters=DeadLetterPublisher(settings=settings),
            rereads=PartitionReader(settings=settings),
            allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
            max_event_bytes=settings.max_event_bytes,
            follower=ModelsAndAlerts(scorer=self.scorer, alerts=self.alerts,
                                     recommender=self.recommender),
            activity_topics=frozenset(settings.topic(name) for name in (CLICKS, PURCHASES)),
        )
        self.alerts.install_sighup_handler(asyncio.get_running_loop())
        self._last_sample = (time.monotonic(), 0)
        self.collector = CollectorSchedule()

    def batch_failed(self) -> None:
        """A batch failed part way (Redis went away): what this worker read or decided of it
        that may not be in Redis or on Kafka is forgotten, for its retry to do again."""
        self.pipeline.forget_progress()
        self.alerts.forget_unpublished()

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
        """Model versions and online metrics, and throughput, for the API and dashboard."""
        now_ms = int(time.time() * 1000)
        versions = self.bundle.model_versions()
        counts = self.bundle.example_counts()
        metrics = self.bundle.metrics()
        report = self.recommender.report() if self.recommender is not None else None
        if report is not None:
            versions["recommendations"] = report.model_version
            counts["recommendations"] = report.example_count
            metrics["recommendations"] = report.metrics
        records = {
            name: orjson.dumps({"name": name, "version": version,
                                "example_count": counts.get(name, 0),
                                "metrics": _numbers(metrics.get(name, {})),
                                "details": _plain(metrics.get(name, {})),
                                "updated_at": now_ms})
            for name, version in versions.items()
        }
        await self.scorer.publish_segments()
        started, processed = self._last_sample
        elapsed = max(time.monotonic() - started, 1e-3)
        rate = (self.pipeline.processed - processed) / elapsed
        self._last_sample = (time.monotonic(), self.pipeline.processed)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(MODELS_KEY, mapping=records)  # type: ignore[arg-type]
            for name in records:
                pipe.xadd(MODELS_HISTORY_KEY, {"at": now_ms, "model": name,
                                               "metrics": orjson.dumps(
                                                   _numbers(metrics.get(name, {})))},
                          maxlen=5000, approximate=True)
            pipe.xadd(THROUGHPUT_KEY, {"at": now_ms, "events_per_s": f"{rate:.1f}",
                                       "lag": -1 if lag is None else lag},
                      maxlen=2000, approximate=True)
            await pipe.execute()

    async def write_due_recommendations(self) -> None:
        """The recommendations tick: the recommender's work of the batches since the last
        tick (their interactions, the lists due) handed to its process in one piece; or,
        without one, the lists still due with no batch to carry them out made here (the
        agent makes a few with each batch's progress; see
        ModelScorer.refresh_recommendations)."""
        if self.recommender is not None:
            self.recommender.submit(self.scorer.take_recommendation_work())
            return
        if not self.scorer.lists_due:
            return
        write = self.scorer.refresh_recommendations()
        async with self.redis.pipeline(transaction=False) as pipe:
            write(pipe)
            await pipe.execute()

    def tenants(self) -> set[str]:
        """The tenants this worker has seen events of."""
        return self.scorer.tenants_seen

    async def forget(self, tenant: str, customer_id: str) -> None:
        await self.scorer.forget(tenant, customer_id)
        if self.recommender is not None:
            self.recommender.submit(RecommendationWork(erased=[(tenant, customer_id)]))


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
