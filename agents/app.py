"""The Faust application: input topics → :func:`~agents.batch.process_batch` → Redis.

One task takes the three input topics' messages in micro-batches from the consumer's
:class:`~agents.transport.InputFeed` (a fetch at a time, not one Faust stream event per
message) and acks a batch only after it has been processed; scale-out is by partitions and
workers. Erasure requests go through a Faust agent. While Redis is away, a batch or erasure
is retried until it answers and a timer's tick is skipped (:mod:`agents.outage`): the worker
waits, it does not crash. Faust tables are not used: state lives in Redis (see DESIGN.md,
"State lives in Redis"), global models in checkpoints this module writes on a timer and on
shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import StreamT

from agents.batch import process_batch
from agents.collector import freeze_loaded_models
from agents.decoding import RawMessage
from agents.outage import (
    BATCH_RETRIED,
    REDIS_UNAVAILABLE,
    skip_tick_without_redis,
    wait_after_error,
    wait_for_redis,
)
from agents.runtime import WorkerRuntime
from agents.transport import InputFeed, ack_all, transport_for
from schemas.records import ErasureRequest
from schemas.topics import CLICKS, ERASURE, PURCHASES, TICKETS
from stream.metrics import BATCH_SECONDS, EVENT_DELAY_SECONDS, EVENTS_PROCESSED
from stream.settings import Settings

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


#: How often the recommender process gets the work of the batches since the last tick (and,
#: without one, lists still due are written when no batch carries them: a few per tick).
RECOMMENDATIONS_TICK_S = 0.25
#: How long a stopping worker may take after its final checkpoint before it exits anyway.
SHUTDOWN_GRACE_S = 5.0


class CrmApp(faust.App):
    """The Faust app, plus a final model checkpoint, a bounded shutdown and a consumer whose
    fetch wait and fetch minimum are settings (see :mod:`agents.transport`).

    An agent or task awaiting its next messages may never finish stopping (faust-streaming
    issue #162), so after the final checkpoint a watchdog ends the process after a grace
    period. That is safe by design: Redis progress and per-event ids make the uncommitted
    tail of each partition a harmless redelivery.
    """

    runtime: WorkerRuntime | None = None
    # From the settings, set by create_app before the consumer is made.
    fetch_max_wait_ms: int
    fetch_min_bytes: int
    #: The input topics' messages, from the consumer to the batch task.
    input_feed: InputFeed | None = None

    def _new_transport(self) -> Any:
        transport = transport_for(self.fetch_max_wait_ms, self.fetch_min_bytes)
        return transport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        if self.runtime is not None:
            try:
                async with asyncio.timeout(self.runtime.settings.redis_deadline_s):
                    await self.runtime.release_segments()
            except Exception:  # Redis away: the leases run out instead
                log.warning("could not give up the segments' leases", exc_info=True)
            try:
                await self.runtime.checkpoint()
            except Exception:  # stopping must go on
                log.exception("final checkpoint failed")
        watchdog = threading.Timer(SHUTDOWN_GRACE_S, _exit_after_grace)
        watchdog.daemon = True
        watchdog.start()
        await super().on_stop()


def _exit_after_grace() -> None:
    log.warning("agents did not stop within %.0fs (faust-streaming#162); exiting", SHUTDOWN_GRACE_S)
    logging.shutdown()
    os._exit(0)


def _faust_datadir(settings: Settings) -> Path:
    datadir = settings.checkpoint_dir / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return datadir


def create_app(settings: Settings) -> faust.App:
    """Build the worker's Faust app with its agents and timers, configured from ``settings``."""
    app = CrmApp(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=_credentials(settings),
        store="memory://",
        # Faust makes a data folder even without tables; keep it beside the checkpoints
        # instead of in the working directory.
        datadir=str(_faust_datadir(settings)),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 5),
        broker_commit_interval=1.0,
        stream_wait_empty=False,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.fetch_min_bytes = settings.fetch_min_bytes
    # The worker's Redis client has no per-reply timeout; each batch, erasure and timer tick
    # has this one deadline instead (see feature_store.client.connect).
    deadline_s = settings.redis_deadline_s

    # Where in each interval this worker checkpoints: a fork slows its parent for the child's
    # life (see agents.checkpoints), so workers started together must not all fork together.
    checkpoint_phase_s = random.uniform(0, settings.checkpoint_interval_s)

    def runtime() -> WorkerRuntime:
        if app.runtime is None:
            app.runtime = WorkerRuntime(settings, checkpoint_phase_s=checkpoint_phase_s,
                                        share_segments=True)
        return app.runtime

    inputs = app.topic(*(settings.topic(name) for name in (CLICKS, PURCHASES, TICKETS)),
                       value_type=bytes, value_serializer="raw",
                       key_type=bytes, key_serializer="raw")

    # The input topics are subscribed through Faust's conductor, but their messages reach the
    # batch task through the feed, a fetch at a time (see agents.transport.InputFeed).
    app.topics.add(inputs)
    feed = app.input_feed = InputFeed(inputs.topics)

    @app.on_partitions_revoked.connect
    async def drop_fetched(sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        dropped = feed.clear()
        if dropped:
            log.info("rebalance: %d fetched messages dropped, to be read again", dropped)

    @app.task
    async def process_events() -> None:
        """One task over the three input topics: a micro-batch mixes clicks, purchases and
        tickets, so each batch pays for its Redis round trips once, batches never wait on each
        other, and the models learn a batch in event-time order across topics. A batch is
        acknowledged (so its offsets may be committed) only after it has been processed."""
        worker = runtime()
        freeze_loaded_models()
        async with skip_tick_without_redis("segments", deadline_s):
            await worker.take_up_segments()
        rebalances_seen = -1  # the first batch counts as the first since a rebalance
        while not app.should_stop:
            taken = await feed.take(settings.batch_max_events, settings.batch_max_wait_ms / 1000)
            first_since_rebalance = app.rebalancing_count != rebalances_seen
            if first_since_rebalance:  # partitions may have moved on
                rebalances_seen = app.rebalancing_count
                worker.worker.partitions.forget()
            started = time.time()
            for message in taken:
                EVENT_DELAY_SECONDS.observe(max(0.0, started - message.timestamp))
            messages = [RawMessage(m.topic, m.partition, m.offset, m.value or b"")
                        for m in taken]
            failures = 0
            with BATCH_SECONDS.time():
                while True:  # until Redis answers: the batch is acked to Kafka only after
                    try:
                        async with asyncio.timeout(deadline_s):
                            await process_batch(worker.worker, messages)
                        break
                    except Exception as error:  # never skipped: see agents.outage
                        failures += 1
                        first = messages[0]
                        what = (f"batch of {len(messages)} messages from "
                                f"{first.topic}/{first.partition}@{first.offset}")
                        if isinstance(error, BATCH_RETRIED):
                            await wait_for_redis(error, failures, task="batch", what=what)
                        else:
                            await wait_after_error(error, failures, what=what)
                        # The failed attempt may or may not have reached Redis.
                        worker.batch_failed()
            ack_all(app.consumer, taken)
            if first_since_rebalance:
                log.info("first batch since rebalance %d: %d messages processed", rebalances_seen,
                         len(taken))
            if failures:
                log.warning("batch done after %d attempts", failures + 1)

    erasure_topic = app.topic(settings.topic(ERASURE), value_type=bytes, value_serializer="raw")

    @app.agent(erasure_topic, name="erase_customers", concurrency=1)
    async def erase_customers(stream: StreamT) -> None:
        worker = runtime()
        async for value in stream:
            try:
                request = ErasureRequest.model_validate(orjson.loads(value))
            except Exception as error:  # a bad request must not stop the erasures behind it
                log.error("invalid erasure request %r: %s", value[:200], error)
                EVENTS_PROCESSED.labels(topic=ERASURE, outcome="dead_letter").inc()
                continue
            failures = 0
            while True:  # until Redis answers; erasing again deletes nothing more
                try:
                    async with asyncio.timeout(deadline_s):
                        await worker.erase(
                            request.tenant, request.customer_id,
                            block_seconds=settings.erasure_block_days * 86_400,
                            receipt_id=request.receipt_id)
                    break
                except REDIS_UNAVAILABLE as error:
                    failures += 1
                    await wait_for_redis(error, failures, task="erasure",
                                         what=f"erasure {request.receipt_id}")

    @app.task
    async def checkpoint_models() -> None:
        """Every ``checkpoint_interval_s`` after the previous checkpoint, the first at this
        worker's phase (a timer's first tick is one interval after start, for every worker)."""
        await app.sleep(checkpoint_phase_s)
        while not app.should_stop:
            if app.runtime is not None:
                try:
                    await app.runtime.checkpoint_in_background()
                except Exception:  # e.g. no memory to fork: the next one may do
                    log.exception("periodic checkpoint failed")
            await app.sleep(settings.checkpoint_interval_s)

    @app.timer(RECOMMENDATIONS_TICK_S)
    async def write_due_recommendations() -> None:
        if app.runtime is not None:
            async with skip_tick_without_redis("recommendations", deadline_s):
                await app.runtime.write_due_recommendations()

    @app.timer(settings.rescore_interval_s)
    async def rescore_quiet_customers() -> None:
        """The silence sweep over the partitions this worker owns (see agents.rescoring)."""
        worker = app.runtime
        if worker is None:
            return
        now_ms = worker.worker.partitions.model_watermark()
        partitions = {tp.partition for tp in app.consumer.assignment()}
        if now_ms is not None and partitions:
            async with skip_tick_without_redis("rescoring", deadline_s):
                await worker.sweep.tick(partitions, now_ms)

    @app.timer(settings.telemetry_interval_s)
    async def publish_telemetry() -> None:
        if app.runtime is None:
            return
        lag = None
        try:
            consumer = app.consumer
            assigned = consumer.assignment()
            highwaters = {tp: consumer.highwater(tp) for tp in assigned}
            positions = {tp: await consumer.position(tp) for tp in assigned}
            lag = sum(max(0, (highwaters[tp] or 0) - (positions[tp] or 0)) for tp in assigned)
        except Exception:  # lag is a nicety; never let it stop telemetry
            log.debug("could not compute consumer lag", exc_info=True)
        async with skip_tick_without_redis("telemetry", deadline_s):
            await app.runtime.publish_telemetry(lag)

    return app
