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
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
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
from load_tests.report import (
    image,
    pyplot,
    reproduce_line,
    run_sentence,
    save_plot,
    speed_check_line,
    table,
    title,
    write_report,
)
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.processes import ManagedProcess, free_port
from stream.producer import EventProducer
from stream.settings import Settings, kafka_client_config

RESULTS = Path(__file__).resolve().parent / "results" / "THROUGHPUT.md"
POLL_S = 0.5  # the worker serves its metrics from a thread of its own: poll gently
TOP_FUNCTIONS = 15


@dataclass
class Backlog:
    events: list[bytes]
    per_topic: Counter[str]
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (topic, value) in order


@dataclass
class Drain:
    """One worker draining the backlog."""

    startup_s: float
    running_s: float
    processed_running: int
    worker_cpu: float | None
    recommender_cpu: float | None
    broker_cpu: float | None
    redis_cpu: float | None
    samples: list[tuple[float, float]]  # (seconds since the worker started, processed)
    batches: float = 0.0  # micro-batches the worker processed

    @property
    def batch_size(self) -> float:
        return self.samples[-1][1] / self.batches if self.batches else float("nan")

    @property
    def rate(self) -> float:
        return self.processed_running / self.running_s

    @property
    def overall(self) -> float:
        return self.samples[-1][1] / (self.startup_s + self.running_s)


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
                [_py_spy(), "record", "--pid", str(worker.pid),
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


def _py_spy() -> str:
    """py-spy beside this interpreter (the bench extra installs it), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def top_functions(raw: Path, limit: int = TOP_FUNCTIONS) -> list[tuple[str, float, float]]:
    """(function, own share, inclusive share) of py-spy's collapsed stacks, by own time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return []
    return [(frame, samples / total, inclusive[frame] / total)
            for frame, samples in own.most_common(limit)]


def _short(frame: str) -> str:
    """``function (path/to/module.py:line)`` as ``function (module.py)``; threads dropped."""
    if frame.startswith(("process ", "thread ")):
        return ""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


def in_process_stages(settings: Settings, backlog: Backlog, batch: int
                      ) -> dict[str, float] | None:
    """The in-process harness's µs per event per stage (None when it cannot run here)."""
    try:
        from load_tests.bench_pipeline import stage_costs
    except ImportError:  # a checkout from before the harness had stages
        return None
    return stage_costs(settings, backlog.messages, batch)


def before_section(report: Path) -> list[str]:
    """The earlier report's run sentence, figures and profile, under a heading of their own
    (its plot and speed check stay in that report)."""
    text = report.read_text().split("\n![", 1)[0]
    body = text.split("\n", 2)[2] if text.startswith("# ") else text
    return ["## Before", "", f"From {report.name} of an earlier version of the worker:", "",
            body.strip().replace("\n#", "\n###"), ""]


def plot(drains: dict[str, Drain], ceiling: float, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.6))
    for label, run in drains.items():
        axes.plot([s for s, _ in run.samples], [n for _, n in run.samples], label=label)
    axes.set_xlabel("seconds since the worker process started")
    axes.set_ylabel("events processed")
    axes.set_title(f"Backlog drained by one worker (consume-only ceiling {ceiling:,.0f}/s)")
    axes.legend(loc="lower right")
    save_plot(figure, path)


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
    parser.add_argument("--batch", type=int, default=500,
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

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    lines = [
        *title("Worker throughput: a backlog drained through the broker"),
        f"{run_sentence()}: {count:,} simulated events ({args.customers} customers, "
        f"{args.days:g} days; " + ", ".join(f"{t}: {n:,}" for t, n in
                                             sorted(backlog.per_topic.items()))
        + f") produced before the worker started, {args.broker} broker and redis-server on "
        "this machine, default scheduling, every model on (the recommender in its process).",
        "",
        *table(["what", "figure"], [
            ["worker, events/s once running", f"**{worker.rate:,.0f}**"],
            ["worker start-up (process start to first batch)", f"{worker.startup_s:.1f} s"],
            ["worker, events/s including start-up", f"{worker.overall:,.0f}"],
            ["consume only (confluent-kafka, same topics)", f"{ceiling:,.0f}"],
            ["ratio worker / consume only", f"{worker.rate / ceiling:.3f}"],
            ["CPU while draining, worker (cores)", share(worker.worker_cpu)],
            ["CPU, its recommender process", share(worker.recommender_cpu)],
            ["CPU, broker", share(worker.broker_cpu)],
            ["CPU, redis-server", share(worker.redis_cpu)],
            ["events per micro-batch (mean)", f"{worker.batch_size:,.0f}"],
        ], align="lr"), "",
    ]
    if stages:
        features = stages["features only (decode, apply, commit)"]
        full = stages["full batch, as the worker runs it (recommender in its process)"]
        lines += ["In-process stages (load_tests.bench_pipeline: the batch function over the "
                  f"same events in batches of {args.batch}, a real redis-server, no broker; "
                  "its steps from the batch's own timers):",
                  "", *table(["stage", "µs per event"],
                             [[name, f"{value:,.1f}"] for name, value in stages.items()],
                             align="lr"), "",
                  f"The full batch runs at {features / full:.2f} of the features-only rate.", ""]
    if profile_rows:
        profiled = drains["worker under py-spy"]
        lines += [f"Top functions of the worker (py-spy, a second drain: "
                  f"{profiled.rate:,.0f} events/s while sampled), by own time:", "",
                  *table(["function", "own", "inclusive"],
                         [[name.replace("|", "/"), f"{own:.1%}", f"{inclusive:.1%}"]
                          for name, own, inclusive in profile_rows], align="lrr"), ""]
    if args.before is not None:
        lines += before_section(args.before)
    lines += [image("events processed over time", plot_path), "",
              speed_check_line(speed_before, speed_after), "",
              reproduce_line(shlex.join(["python", "-m", "load_tests.bench_throughput",
                                         *sys.argv[1:]])), ""]
    write_report(args.output, "\n".join(lines))


if __name__ == "__main__":
    main()
