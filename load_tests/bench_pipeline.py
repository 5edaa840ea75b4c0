"""How fast one worker turns events into features and scores, against a consume-only baseline.

Three stages over the same simulated events, in one run (ratios are what travel between
machines; this one is shared and noisy):

1. consume only: a confluent-kafka consumer reading the events from the embedded broker;
2. features: the worker's :class:`~agents.pipeline.EventPipeline` (decode, validate, the Lua
   feature updates in a real redis-server), in-process, batches of ``--batch`` events of the
   three topics mixed (as the worker's single agent takes them);
3. full: the same plus the online models and alert rules (:class:`agents.runtime.WorkerRuntime`).

Run ``python -m load_tests.bench_pipeline [--events N]``; writes load_tests/results/PIPELINE.md.

Stages 2 and 3 drive the worker's own classes in this process (``agents.pipeline``,
``agents.runtime``): what is measured is their cost per event, with no Kafka consumer or
Faust around them, so this benchmark imports the worker's modules (an exception the
import-linter contract names).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
from confluent_kafka import Consumer
from tqdm import tqdm

from agents.pipeline import RawMessage
from load_tests.commands import create_topics
from load_tests.measure import speed_check_ms
from load_tests.report import (
    reproduce_line,
    run_sentence,
    speed_check_line,
    table,
    title,
    write_report,
)
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.devstack import EmbeddedBroker, RedisServer
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config

RESULTS = Path(__file__).parent / "results" / "PIPELINE.md"
BATCH = 500


class _NoDeadLetters:
    def publish(self, _: Any) -> None: ...

    async def flush(self) -> None: ...


def consume_only(settings: Settings, count: int) -> float:
    consumer = Consumer({**kafka_client_config(settings), "group.id": "bench-consume-only",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic(topic) for topic in set(TOPIC_BY_TYPE.values())])
    seen, started = 0, None
    with tqdm(total=count, desc="consume only", unit="ev") as progress:
        while seen < count:
            messages = consumer.consume(BATCH, 1.0)
            if messages and started is None:
                started = time.perf_counter()
            good = sum(1 for message in messages if not message.error())
            seen += good
            progress.update(good)
    consumer.close()
    return seen / (time.perf_counter() - (started or time.perf_counter()))


async def in_process(settings: Settings, batches: list[list[RawMessage]], *,
                     with_models: bool) -> float:
    from agents.runtime import WorkerRuntime

    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: _NoDeadLetters()), \
            mock.patch("agents.alerting.Producer"):
        # The recommender in this process too: the figure is the whole model cost per event.
        runtime = WorkerRuntime(settings.model_copy(update={"recommender_process": False}))
    if not with_models:
        runtime.pipeline.follower = None
    else:
        async def keep(alerts: Any, timeout: float = 0.0) -> Any:
            return lambda pipe: None  # publishing is measured by bench_alerts
        runtime.alerts.publish_to_topic = keep  # type: ignore[method-assign]
    await runtime.redis.flushdb()
    total = sum(len(batch) for batch in batches)
    started = time.perf_counter()
    with tqdm(total=total, desc="full" if with_models else "features", unit="ev") as progress:
        for batch in batches:
            await runtime.pipeline.process(batch)
            progress.update(len(batch))
    elapsed = time.perf_counter() - started
    await runtime.redis.aclose()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="events per micro-batch (the worker takes up to 500)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    broker, redis_server = EmbeddedBroker(work_dir=work), RedisServer(work_dir=work, persist=False)
    try:
        settings = Settings(kafka_bootstrap=broker.start(), redis_url=redis_server.start(),
                            partitions=3, checkpoint_dir=work / "checkpoints")
        create_topics(settings)
        simulator = ShopSimulator(customers=3000, seed=9, start=datetime(2025, 3, 1, tzinfo=UTC))
        events = list(islice(simulator.events(), args.events))
        per_topic: dict[str, int] = {}
        messages: list[RawMessage] = []
        with EventProducer(settings=settings) as producer:
            for event in events:
                topic = TOPIC_BY_TYPE[event["type"]]
                payload = orjson.dumps(event)
                producer.send_raw(settings.topic(topic), event.get("customer_id") or
                                  f"anon:{event['anonymous_id']}", payload)
                offset = per_topic.get(topic, 0)
                per_topic[topic] = offset + 1
                messages.append(RawMessage(topic, 0, offset, payload))
        # As the worker's one agent sees them: the three topics mixed, in arrival order.
        batches = [messages[i:i + args.batch] for i in range(0, len(messages), args.batch)]
        speed_before = speed_check_ms()
        baseline = consume_only(settings, len(events))
        features = asyncio.run(in_process(settings, batches, with_models=False))
        full = asyncio.run(in_process(settings, batches, with_models=True))
        speed_ms = (speed_before, speed_check_ms())
    finally:
        redis_server.stop()
        broker.stop()
    rows = [("consume only (baseline)", baseline),
            ("features (decode, validate, Redis Lua)", features),
            ("full (features + models + alert rules)", full)]
    write_report(RESULTS, "\n".join([
        *title("Worker throughput"),
        f"{run_sentence()}: {len(events):,} simulated events "
        f"({', '.join(f'{t}: {n:,}' for t, n in per_topic.items())}), mixed batches of "
        f"{args.batch}, one process, real redis-server and embedded broker on this machine.", "",
        *table(["stage", "events/s", "µs/event", "ratio to consume-only"],
               [[name, f"{rate:,.0f}", f"{1e6 / rate:,.0f}", f"{rate / baseline:.3f}"]
                for name, rate in rows], align="lrrr"), "",
        speed_check_line(*speed_ms), "",
        reproduce_line(f"python -m load_tests.bench_pipeline --events {args.events} "
                       f"--batch {args.batch}"), ""]))


if __name__ == "__main__":
    main()
