"""Benchmark: how fast one ``crm worker`` drains a backlog, every model on, against the
consume-only ceiling of the same broker in the same run.

A simulated shop (``--customers`` over ``--days``) is produced to the input topics before
anything consumes them. Then, on this machine:

1. consume only: a plain confluent-kafka consumer reads the whole backlog (the ceiling);
2. the worker: ``crm worker`` (every model on, its recommender process beside it) drains
   the backlog through the broker into Redis. Start-up (process start to its first batch)
   and the drain once running are timed apart, from the worker's own metrics; the CPU of
   the worker (and its recommender process), the broker and redis-server is read from
   ``/proc`` over the drain;
3. with ``--profile``, the same backlog again under a new consumer group and an emptied
   Redis, with py-spy sampling the worker: its top functions by own and inclusive time;
4. the in-process stages (:mod:`load_tests.bench_pipeline`: decode, features, models,
   rules, in µs per event) over the same events, unless ``--no-stages``.

Run ``python -m load_tests.bench_throughput [--broker apache] [--profile]`` (or ``crm bench
throughput``); writes ``load_tests/results/THROUGHPUT.md`` and its plot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from confluent_kafka import Consumer

from load_tests.alerts_measure import worker_metrics
from load_tests.bench_alerts import Stack, start_stack
from load_tests.commands import start_crm
from load_tests.measure import (
    cpu_by_process,
    cpu_seconds,
    metric_total,
    spawned_children,
    speed_check_ms,
)
from load_tests.profiling import py_spy_path, top_functions
from load_tests.throughput_report import Backlog, Drain, plot, write
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.processes import ManagedProcess, free_port
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config

RESULTS = Path(__file__).resolve().parent / "results" / "THROUGHPUT.md"
POLL_S = 0.5  # the worker serves its metrics from a thread of its own: poll gently


def simulate(customers: int, days: float, seed: int) -> Backlog:
    """The simulated shop's events, ending a day before now (so none is in the future)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days + 1)
    simulator = ShopSimulator(customers=customers, seed=seed, start=start, days=days)
    backlog = Backlog(events=[], per_topic=Counter())
    for event in simulator.events():
        topic = TOPIC_BY_TYPE[event["type"]]
        value = orjson.dumps(event)
        backlog.per_topic[topic] += 1
        backlog.messages.append((topic, value))
        backlog.events.append(value)
    return backlog


def produce(settings: Settings, backlog: Backlog) -> None:
    with EventProducer(settings=settings) as producer:
        for topic, value in backlog.messages:
            event = orjson.loads(value)
            producer.send_raw(settings.topic(topic), event.get("customer_id")
                              or f"anon:{event['anonymous_id']}", value)


def consume_only(settings: Settings, count: int) -> float:
    """Events/s of a plain confluent-kafka consumer over the input topics, first to last."""
    consumer = Consumer({**kafka_client_config(settings),
                         "group.id": f"bench-consume-only-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic(topic) for topic in sorted(set(TOPIC_BY_TYPE.values()))])
    seen, started = 0, None
    deadline = time.monotonic() + 300
    while seen < count and time.monotonic() < deadline:
        messages = consumer.consume(1000, 1.0)
        if messages and started is None:
            started = time.perf_counter()
        seen += sum(1 for message in messages if not message.error())
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed if elapsed > 0 else float("nan")


def processed(port: int, sample: str = "crm_worker_events_processed_total") -> float:
    try:
        (text,) = worker_metrics([port])
    except OSError:
        return 0.0  # not serving yet
    return metric_total(text, sample)


def redis_pids() -> list[int]:
    return [pid for pid, (command, _) in cpu_by_process().items()
            if Path(command.split(" ", 1)[0]).name == "redis-server"]


def drain(run: Stack, work: Path, count: int, *, name: str, app_id: str,
          profile_s: float | None = None) -> tuple[Drain, Path | None]:
    """Start a worker in a new consumer group and time it through ``count`` messages."""
    port = free_port()
    env = run.settings.model_copy(update={
        "checkpoint_dir": work / f"checkpoints-{name}", "log_level": "WARNING",
        "app_id": app_id}).to_env()
    started = time.monotonic()
    worker: ManagedProcess = start_crm(name, ["worker"], work=work, env={
        **env, "CRM_WORKER_NAME": name, "CRM_WORKER_METRICS_PORT": str(port)})
    try:
        samples: list[tuple[float, float]] = []
        done = 0.0
        while done <= 0:
            time.sleep(POLL_S / 5)
            done = processed(port)
            if not worker.is_running():
                raise SystemExit(f"the worker exited: see {worker.log_path}")
        running_at, done_at_start = time.monotonic(), done
        samples.append((running_at - started, done))
        pids = [worker.pid]
        recommender = spawned_children(pids)
        servers = redis_pids()
        before = (cpu_seconds(pids), cpu_seconds(recommender), cpu_seconds(run.broker_pids),
                  cpu_seconds(servers))
        profile_path = None
        profiler = None
        if profile_s is not None:
            profile_path = work / f"{name}.profile.txt"
            profiler = subprocess.Popen(
                [py_spy_path(), "record", "--pid", str(worker.pid),
                 "--rate", "200", "--nonblocking", "--format", "raw", "--duration",
                 str(int(profile_s)), "--output", str(profile_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 900
        while done < count and time.monotonic() < deadline:
            time.sleep(POLL_S)
            done = processed(port)
            samples.append((time.monotonic() - started, done))
        finished_at = time.monotonic()
        after = (cpu_seconds(pids), cpu_seconds(recommender), cpu_seconds(run.broker_pids),
                 cpu_seconds(servers))
        batches = processed(port, "crm_worker_batch_seconds_count")
        if profiler is not None:
            profiler.wait(timeout=int(profile_s or 0) + 60)
        wall = finished_at - running_at
        shares = [None if b is None or a is None else (a - b) / wall
                  for b, a in zip(before, after, strict=True)]
        return Drain(startup_s=running_at - started, running_s=wall,
                     processed_running=int(done - done_at_start), worker_cpu=shares[0],
                     recommender_cpu=shares[1], broker_cpu=shares[2], redis_cpu=shares[3],
                     samples=samples, batches=batches), profile_path
    finally:
        worker.stop(timeout=15)


def in_process_stages(settings: Settings, backlog: Backlog, batch: int
                      ) -> dict[str, float] | None:
    """The in-process harness's µs per event per stage (None when it cannot run here)."""
    try:
        from load_tests.bench_pipeline import stage_costs
    except ImportError:  # a checkout from before the harness had stages
        return None
    return stage_costs(settings, backlog.messages, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--broker", choices=["embedded", "apache"], default="embedded")
    parser.add_argument("--profile", action="store_true",
                        help="drain the backlog a second time with py-spy on the worker")
    parser.add_argument("--no-stages", action="store_true",
                        help="skip the in-process stages")
    parser.add_argument("--batch", type=int,
                        default=Settings.model_fields["batch_max_events"].default,
                        help="events per batch of the in-process stages (the worker's largest)")
    parser.add_argument("--before", type=Path, default=None,
                        help="a report of this benchmark from an earlier version of the "
                             "worker, shown beside this run's (e.g. the commit before a change)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    speed_before = speed_check_ms()
    backlog = simulate(args.customers, args.days, args.seed)
    count = len(backlog.events)
    profile_rows: list[tuple[str, float, float]] = []
    stages = None
    with tempfile.TemporaryDirectory(prefix="bench-throughput-",
                                     ignore_cleanup_errors=True) as tmp, ExitStack() as stack:
        work = Path(tmp)
        run = start_stack(stack, work, broker=args.broker, workers=0)
        produce(run.settings, backlog)
        print(f"backlog: {count:,} events", file=sys.stderr)
        ceiling = consume_only(run.settings, count)
        print(f"consume only: {ceiling:,.0f} events/s", file=sys.stderr)
        worker, _ = drain(run, work, count, name="worker", app_id=f"{run.settings.app_id}-a")
        print(f"worker: {worker.rate:,.0f} events/s once running, start-up "
              f"{worker.startup_s:.1f} s", file=sys.stderr)
        drains = {"worker": worker}
        if args.profile:
            import redis

            redis.Redis.from_url(run.settings.redis_url).flushdb()
            profiled, raw = drain(run, work, count, name="profiled",
                                  app_id=f"{run.settings.app_id}-b",
                                  profile_s=worker.running_s + 2)
            drains["worker under py-spy"] = profiled
            if raw is not None and raw.exists():
                profile_rows = top_functions(raw)
        if not args.no_stages:
            stages = in_process_stages(
                run.settings.model_copy(update={"redis_url": run.settings.redis_url[:-1] + "1",
                                                "checkpoint_dir": work / "in-process"}),
                backlog, args.batch)
        plot_path = args.output.with_suffix(".png")
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot(drains, ceiling, plot_path)
    speed_after = speed_check_ms()

    write(args, backlog=backlog, drains=drains, ceiling=ceiling, stages=stages,
          profile_rows=profile_rows, plot_path=plot_path,
          speed=(speed_before, speed_after))


if __name__ == "__main__":
    main()
