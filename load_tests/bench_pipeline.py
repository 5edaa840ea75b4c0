"""How fast one worker turns events into features and scores, in process, against a
consume-only baseline.

Three stages over the same simulated events, in one run (ratios are what travel between
machines; this one is shared and noisy):

1. consume only: a confluent-kafka consumer reading the events from the embedded broker;
2. features: the worker's batch function (:func:`agents.batch.process_batch`) with the
   models and the alert rules left out: decode, validate, the Lua feature updates in a real
   redis-server, the commit;
3. full: the whole batch function, every model on (the recommender in this process, as
   with ``CRM_RECOMMENDER_PROCESS=false``), publishing to Kafka left out.

Batches of ``--batch`` events mix the three topics, as the worker's single agent takes them.
The full stage also reports each step of the batch in µs per event, from the batch's own
step timers (``crm_worker_batch_step_seconds``).

Run ``python -m load_tests.bench_pipeline [--events N]``; writes load_tests/results/PIPELINE.md.

Stages 2 and 3 drive the worker's own batch function in this process: what is measured is
its cost per event, with no Kafka consumer or Faust around it, so this benchmark imports the
worker's modules (an exception the import-linter contract names).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import orjson
from confluent_kafka import Consumer
from tqdm import tqdm

from agents.batch import process_batch
from agents.collector import configure_worker_process, freeze_loaded_models
from agents.decoding import RawMessage
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
from stream.metrics import BATCH_STEP_NAMES, BATCH_STEPS
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config

if TYPE_CHECKING:
    from agents.runtime import WorkerRuntime

RESULTS = Path(__file__).parent / "results" / "PIPELINE.md"
BATCH = Settings.model_fields["batch_max_events"].default


class _NoDeadLetters:
    async def publish_all(self, dead_letters: Sequence[Any]) -> None: ...


class _NoAlerts:
    """Publishing is measured by bench_alerts."""

    async def publish(self, alerts: Sequence[Any], repeats: Any = ()) -> list[Any]:
        return []  # nothing carried over from a failed publish: none fails

    def carry(self, alerts: Sequence[Any]) -> None:
        """What an earlier worker left unsent is not sent either."""


def runtime_without_broker(settings: Settings) -> WorkerRuntime:
    """A worker runtime, its recommender in this process, that publishes nothing (dead
    letters and alerts are left out): the batch function is driven here with no Kafka.
    Call it in a running event loop, as the worker does."""
    from agents.runtime import WorkerRuntime

    with mock.patch("agents.runtime.DeadLetterPublisher", lambda settings: _NoDeadLetters()), \
            mock.patch("agents.runtime.AlertPublisher", lambda settings: _NoAlerts()):
        return WorkerRuntime(settings.model_copy(update={"recommender_process": False}))


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


def _step_seconds() -> dict[str, float]:
    return {step: BATCH_STEPS[step]._sum.get() for step in BATCH_STEP_NAMES}


async def in_process(settings: Settings, batches: list[list[RawMessage]], *,
                     with_models: bool, recommender_here: bool = True
                     ) -> tuple[float, dict[str, float]]:
    """Events/s of the batch function over ``batches``, and its steps in µs per event.
    ``recommender_here``: the recommender learns and lists in this process, with each
    batch (else its work is only collected, as a worker with a recommender process does)."""
    from agents.models import ModelStep, Scored

    class NoModels(ModelStep):
        def learn_and_score(self, *args: Any, **kwargs: Any) -> Scored:
            return Scored()

    runtime = runtime_without_broker(settings)
    configure_worker_process()  # the collector as the worker sets it
    freeze_loaded_models()
    worker = runtime.worker
    worker.lists_in_worker = recommender_here
    if not with_models:
        worker.models = NoModels(bundle=runtime.bundle)
        worker.lists_in_worker = False
    await runtime.store.redis.flushdb()
    total = sum(len(batch) for batch in batches)
    steps_before = _step_seconds()
    started = time.perf_counter()
    with tqdm(total=total, desc="full" if with_models else "features", unit="ev") as progress:
        for batch in batches:
            await process_batch(worker, batch)
            progress.update(len(batch))
    elapsed = time.perf_counter() - started
    steps = {step: (seconds - steps_before[step]) * 1e6 / total
             for step, seconds in _step_seconds().items()}
    await runtime.store.close()
    return total / elapsed, steps


def messages_of(events: Sequence[tuple[str, bytes]], partitions: int = 1) -> list[RawMessage]:
    """(topic, value) in arrival order as the messages of one partition per topic."""
    offsets: dict[str, int] = {}
    messages = []
    for topic, value in events:
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(RawMessage(topic, 0, offsets[topic], value))
    return messages


def stage_costs(settings: Settings, events: Sequence[tuple[str, bytes]], batch: int,
                rounds: int = 3) -> dict[str, float]:
    """The batch function's stages in µs per event over ``events``: features only, the
    whole batch, and each of its steps (for ``load_tests.bench_throughput``).

    Features only and the whole batch run in turn ``rounds`` times, and each figure is the
    median of its rounds (the steps those of the median whole batch): on this shared
    machine one run of either swings by a tenth from the next.
    """
    messages = messages_of(events)
    batches = [messages[i:i + batch] for i in range(0, len(messages), batch)]
    features: list[float] = []
    full: list[tuple[float, dict[str, float]]] = []
    for round_ in range(1, rounds + 1):
        print(f"in-process stages: round {round_} of {rounds}", file=sys.stderr)
        features.append(1e6 / asyncio.run(in_process(settings, batches, with_models=False))[0])
        rate, steps = asyncio.run(in_process(settings, batches, with_models=True,
                                             recommender_here=False))
        full.append((1e6 / rate, steps))
    full_us, steps = sorted(full, key=lambda run: run[0])[len(full) // 2]
    with_lists, _ = asyncio.run(in_process(settings, batches, with_models=True))
    return {"features only (decode, apply, commit)": statistics.median(features),
            "full batch, as the worker runs it (recommender in its process)": full_us,
            **{f"  step: {step}": value for step, value in steps.items()},
            "full batch with the recommender in this process": 1e6 / with_lists}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
        pairs: list[tuple[str, bytes]] = []
        with EventProducer(settings=settings) as producer:
            for event in events:
                topic = TOPIC_BY_TYPE[event["type"]]
                payload = orjson.dumps(event)
                producer.send_raw(settings.topic(topic), event.get("customer_id") or
                                  f"anon:{event['anonymous_id']}", payload)
                per_topic[topic] = per_topic.get(topic, 0) + 1
                pairs.append((topic, payload))
        # As the worker's one agent sees them: the three topics mixed, in arrival order.
        messages = messages_of(pairs)
        batches = [messages[i:i + args.batch] for i in range(0, len(messages), args.batch)]
        speed_before = speed_check_ms()
        baseline = consume_only(settings, len(events))
        features, _ = asyncio.run(in_process(settings, batches, with_models=False))
        full, steps = asyncio.run(in_process(settings, batches, with_models=True))
        speed_ms = (speed_before, speed_check_ms())
    finally:
        redis_server.stop()
        broker.stop()
    rows = [("consume only (baseline)", baseline),
            ("features (decode, validate, Redis Lua, commit)", features),
            ("full (features + models + alert rules)", full)]
    write_report(RESULTS, "\n".join([
        *title("Worker throughput, in process"),
        f"{run_sentence()}: {len(events):,} simulated events "
        f"({', '.join(f'{t}: {n:,}' for t, n in per_topic.items())}), mixed batches of "
        f"{args.batch}, one process, real redis-server and embedded broker on this machine.", "",
        *table(["stage", "events/s", "µs/event", "ratio to consume-only"],
               [[name, f"{rate:,.0f}", f"{1e6 / rate:,.0f}", f"{rate / baseline:.3f}"]
                for name, rate in rows], align="lrrr"), "",
        f"The full batch runs at {full / features:.2f} of the features-only rate. Its steps "
        "(the batch's own timers):", "",
        *table(["step", "µs/event"], [[step, f"{value:,.1f}"] for step, value in steps.items()],
               align="lr"), "",
        speed_check_line(*speed_ms), "",
        reproduce_line(f"python -m load_tests.bench_pipeline --events {args.events} "
                       f"--batch {args.batch}"), ""]))


if __name__ == "__main__":
    main()
