"""The Faust application: input topics → :class:`~agents.pipeline.EventPipeline` → Redis.

Agents run with concurrency 1 and read micro-batches with ``take_events``, which acks a
batch only after the agent has processed it; scale-out is by partitions and workers. Faust
tables are not used: state lives in Redis (see DESIGN.md, "State lives in Redis").
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import faust
import orjson
from faust.types import StreamT

from agents.pipeline import EventPipeline, RawMessage
from feature_store.store import FeatureStore, StoreLimits
from schemas.records import ErasureRequest
from schemas.topics import CLICKS, ERASURE, PURCHASES, TICKETS
from stream.deadletters import DeadLetterPublisher
from stream.metrics import BATCH_SECONDS, EVENTS_PROCESSED
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


def create_app(settings: Settings) -> faust.App:
    """Build the worker's Faust app with its agents, configured from ``settings``."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 5),
        broker_commit_interval=1.0,
        stream_wait_empty=False,
    )
    state: dict[str, Any] = {}

    async def pipeline() -> EventPipeline:
        if "pipeline" not in state:
            state["store"] = FeatureStore.from_url(
                settings.redis_url,
                limits=StoreLimits(max_event_ids=settings.dedupe_ids_per_customer),
            )
            state["pipeline"] = EventPipeline(
                store=state["store"],
                dead_letters=DeadLetterPublisher(settings=settings),
                allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
                max_event_bytes=settings.max_event_bytes,
            )
        return state["pipeline"]  # type: ignore[no-any-return]

    def input_agent(topic_name: str) -> None:
        topic = app.topic(settings.topic(topic_name), value_type=bytes, value_serializer="raw",
                          key_type=bytes, key_serializer="raw")

        async def consume(stream: StreamT) -> None:
            processor = await pipeline()
            async for events in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_max_events, within=settings.batch_max_wait_ms / 1000
            ):
                with BATCH_SECONDS.labels(topic=topic_name).time():
                    await processor.process([
                        RawMessage(e.message.topic, e.message.partition, e.message.offset,
                                   e.message.value or b"")
                        for e in events
                    ])

        consume.__name__ = f"consume_{topic_name.replace('.', '_')}"
        app.agent(topic, name=consume.__name__, concurrency=1)(consume)

    for name in (CLICKS, PURCHASES, TICKETS):
        input_agent(name)

    erasure_topic = app.topic(settings.topic(ERASURE), value_type=bytes, value_serializer="raw")

    @app.agent(erasure_topic, name="erase_customers", concurrency=1)
    async def erase_customers(stream: StreamT) -> None:
        processor = await pipeline()
        async for value in stream:
            try:
                request = ErasureRequest.model_validate(orjson.loads(value))
            except Exception as error:  # a bad request must not stop erasures behind it
                log.error("invalid erasure request %r: %s", value[:200], error)
                EVENTS_PROCESSED.labels(topic=ERASURE, outcome="dead_letter").inc()
                continue
            await processor.store.erase(
                tenant=request.tenant, customer_id=request.customer_id,
                block_seconds=settings.erasure_block_days * 86_400,
                receipt_id=request.receipt_id,
            )

    return app
