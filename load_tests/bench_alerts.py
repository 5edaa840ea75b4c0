"""Benchmark: latency from a triggering event to its alert on ``crm.alerts`` under load.

Sends simulated shop traffic with the producer SDK at a fixed rate (open loop: event *i* leaves
at ``start + i / rate``) and, every ``--probe-every`` events, a *probe*: a support ticket
resolved with CSAT 1 by a fresh customer, which the ``negative_ticket`` rule must alert on
(it is not a marketing kind, so consent never holds it back, and a fresh customer has no
cooldown). A consumer of ``crm.alerts`` matches each alert's ``triggered_by`` to the probe's
send time; the report gives p50/p90/p99 of send → alert received, and the probes that never
alerted. Probe event times follow the simulated clock, so watermarks stay coherent.

Before the first rate, ``--prime`` seconds of unmeasured traffic go through the whole pipeline
and are drained, so what is measured is a broker, workers and Redis in service, not a JVM
compiling its hot paths or models meeting their first customers.

    python -m load_tests.bench_alerts --broker apache --workers 2 --rate 2000 --duration 30

Starts (on loopback) an embedded broker, a redis-server and one ``crm worker`` unless
``CRM_KAFKA_BOOTSTRAP`` is set, in which case it uses that cluster, ``CRM_REDIS_URL`` and the
worker already running there. Writes ``load_tests/results/ALERTS.md``. Goal: p99 <= 100 ms.

Everything it starts, and its own sender and consumer, run at real-time round-robin priority
``--realtime-priority`` (``chrt --rr``; 0 for the default scheduler; see
:mod:`load_tests.scheduling`). Why: at 2,000 events/s the stack uses about 1.5 of this
machine's two cores, so any other load on the machine tips it into queueing. Under the default
scheduler the tail came in episodes of seconds to 20 s with no checkpoint or stall of the
stack's own near them: p99 at 2,000 events/s was 276-1,866 ms in five runs, against 52-418 ms
(median 93) in 24 with the stack first, in the same hours. The stack on machines of its
own does not share them with other tenants.

How much slower a host the goal survives is shown on demand: ``--busy-host 0.3`` has a
spinner above the stack's priority take 30% of each core for the measured rates (see
:func:`load_tests.scheduling.busy_host`), as the slow hours of this shared machine do.

The traffic and the watch on ``crm.alerts`` are in :mod:`load_tests.alerts_traffic`, the
measurements in :mod:`load_tests.alerts_measure`, the report in :mod:`load_tests.alerts_report`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from load_tests.alerts_measure import (
    Point,
    measure,
    scrape_step_times,
    wait_until_processed,
)
from load_tests.alerts_report import plot_points, plot_timeline, report
from load_tests.alerts_traffic import AlertWatch, run_load, wait_for_members, warm_up
from load_tests.commands import create_topics, start_crm
from load_tests.measure import cpu_seconds, cpu_share, spawned_children, speed_check_ms
from load_tests.report import write_report
from load_tests.scheduling import (
    become_realtime,
    busy_host,
    busy_host_problem,
    permitted_priority,
)
from stream.processes import free_port
from stream.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "ALERTS.md"


@dataclass
class Stack:
    """What the benchmark runs against: its settings, and the processes it started itself."""

    settings: Settings
    worker_pids: list[int] = field(default_factory=list)
    broker_pids: list[int] = field(default_factory=list)
    #: The workers' metrics ports (``CRM_WORKER_METRICS_PORT``), one per worker started here.
    metrics_ports: list[int] = field(default_factory=list)


def start_stack(stack: ExitStack, work: Path, *, broker: str, workers: int) -> Stack:
    """A broker, a redis-server, the topics and ``workers`` ``crm worker`` processes, all on
    loopback; each stops when ``stack`` closes."""
    from stream.devstack import EmbeddedBroker, RedisServer

    broker_pids = []
    if broker == "apache":
        from stream.apache_kafka import ApacheKafka

        kafka = ApacheKafka(data_dir=work / "apache-kafka")
        bootstrap = kafka.start()
        stack.callback(kafka.stop)
        broker_pids += [kafka.pid] if kafka.pid is not None else []
    else:
        embedded = EmbeddedBroker(work_dir=work)
        bootstrap = embedded.start()
        stack.callback(embedded.stop)
        broker_pids.append(embedded.process.pid)
    server = RedisServer(work_dir=work, persist=False)
    redis_url = server.start()
    stack.callback(server.stop)
    run_id = uuid.uuid4().hex[:6]
    started = Stack(settings=Settings(kafka_bootstrap=bootstrap, redis_url=redis_url,
                                      topic_prefix=f"bench{run_id}.", app_id=f"bench-{run_id}"),
                    broker_pids=broker_pids)
    create_topics(started.settings)
    env = started.settings.model_copy(update={"checkpoint_dir": work / "checkpoints",
                                               "log_level": "WARNING"}).to_env()
    for number in range(workers):
        started.metrics_ports.append(free_port())
        worker = start_crm(f"worker-{number}", ["worker"], work=work,
                           env={**env, "CRM_WORKER_NAME": f"bench-{number}",
                                "CRM_WORKER_METRICS_PORT": str(started.metrics_ports[-1])})
        stack.callback(worker.stop)
        if worker.pid is not None:
            started.worker_pids.append(worker.pid)
    return started


def measure_rate(run: Stack, watch: AlertWatch, args: argparse.Namespace, *, rate: float,
                 seed: int, sent_before: int) -> tuple[Point, int]:
    """One offered rate: its load, the alerts it raised and the CPU it cost; waits for the
    last alerts and (on a stack started here) the backlog. Answers the point and the
    messages sent."""
    recommender_pids = spawned_children(run.worker_pids)
    cpu_before, wall_before = cpu_seconds(run.worker_pids), time.monotonic()
    broker_before = cpu_seconds(run.broker_pids)
    recommender_before = cpu_seconds(recommender_pids)
    steps_before = scrape_step_times(run.metrics_ports)
    probes, sent, elapsed = run_load(
        run.settings, rate=rate, duration_s=args.duration, warmup_s=args.warmup,
        probe_every=args.probe_every, customers=args.customers, linger_ms=args.linger_ms,
        seed=seed)
    cpu_after, wall_after = cpu_seconds(run.worker_pids), time.monotonic()
    broker_after = cpu_seconds(run.broker_pids)
    recommender_after = cpu_seconds(recommender_pids)
    steps_after = scrape_step_times(run.metrics_ports)
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline and not set(probes) <= set(watch.received_at):
        time.sleep(0.2)
    if run.metrics_ports:
        wait_until_processed(run.metrics_ports, sent_before + sent,
                             max(0.0, deadline - time.monotonic()))
    wall = wall_after - wall_before
    point = measure(probes, watch, rate=rate, sent=sent, elapsed_s=elapsed,
                    worker_cpu=cpu_share(cpu_before, cpu_after, wall),
                    broker_cpu=cpu_share(broker_before, broker_after, wall),
                    recommender_cpu=cpu_share(recommender_before, recommender_after, wall))
    if run.metrics_ports:
        point.steps = {step: times - steps_before[step] for step, times in steps_after.items()}
    return point, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[2000.0],
                        help="events/s offered; several values make a sweep")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of load per rate")
    parser.add_argument("--probe-every", type=int, default=100,
                        help="one probe ticket per this many events")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of traffic before the first probe (not measured)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the partitions (embedded stack only)")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="longest wait for the last alerts and the backlog after a rate")
    parser.add_argument("--broker", choices=["embedded", "apache"], default="embedded",
                        help="which Kafka to start on this machine (unless CRM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--linger-ms", type=float, default=5.0,
                        help="the sending producer's linger.ms (5 is the SDK's default)")
    parser.add_argument("--prime", type=float, default=60.0,
                        help="seconds of unmeasured traffic at the first rate through the "
                             "whole pipeline before any measurement, drained before the first "
                             "rate (a JVM broker compiles its hot paths in its first minute)")
    parser.add_argument("--realtime-priority", type=int, default=10, metavar="N",
                        help="real-time round-robin priority for everything this benchmark "
                             "starts and its own sender and consumer (chrt --rr; needs root or "
                             "CAP_SYS_NICE); 0: the default scheduler")
    parser.add_argument("--busy-host", type=float, default=0.0, metavar="SHARE",
                        help="emulate a busier host for the measured rates: on each core a "
                             "spinner above the stack's priority takes this share of the core "
                             "(e.g. 0.3; needs stress-ng and real-time permission)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    priority = permitted_priority(args.realtime_priority)
    spinner_priority = priority + 10
    if args.busy_host and (problem := busy_host_problem(args.busy_host, spinner_priority)):
        parser.error(f"--busy-host: {problem}")
    # Before anything starts: the broker, redis-server, workers and this process's threads
    # (the sender's and the consumer's librdkafka threads among them) inherit it.
    become_realtime(priority)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers started below stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    remote = bool(os.environ.get("CRM_KAFKA_BOOTSTRAP"))
    points: list[Point] = []
    # The processes stop (the stack closes) before their folder goes; a file one of them
    # still held open must not cost the run its report.
    with tempfile.TemporaryDirectory(prefix="bench-alerts-", ignore_cleanup_errors=True) as tmp, \
            ExitStack() as stack:
        run = (Stack(settings=Settings()) if remote else
               start_stack(stack, Path(tmp), broker=args.broker, workers=args.workers))
        embedded = not remote and args.broker == "embedded"
        watch = AlertWatch(run.settings, fetch_wait_ms=5 if embedded else 100).start()
        stack.callback(watch.stop)
        print(f"worker ready after {warm_up(run.settings, watch):.1f} s", file=sys.stderr)
        if not remote and args.workers > 1:
            wait_for_members(run.settings, args.workers)
        sent_so_far = 1  # the warm-up probe
        if args.prime > 0:
            print(f"priming: {args.prime:g} s at {args.rate[0]:,.0f} events/s, unmeasured",
                  file=sys.stderr)
            _, sent, _ = run_load(run.settings, rate=args.rate[0], duration_s=args.prime,
                                  warmup_s=0, probe_every=0, customers=args.customers,
                                  seed=16, linger_ms=args.linger_ms)
            sent_so_far += sent
            if run.metrics_ports:
                wait_until_processed(run.metrics_ports, sent_so_far, args.drain)
        stack.enter_context(busy_host(args.busy_host, spinner_priority))
        speed_before = speed_check_ms()
        for index, rate in enumerate(args.rate):
            print(f"rate {rate:,.0f} events/s ({index + 1}/{len(args.rate)})", file=sys.stderr)
            point, sent = measure_rate(run, watch, args, rate=rate, seed=17 + index,
                                       sent_before=sent_so_far)
            points.append(point)
            sent_so_far += sent
        plot = args.output.with_suffix(".png") if len(points) > 1 else None
        timeline = args.output.with_name(f"{args.output.stem}-timeline.png") if points else None
        text = report(points, watch, workers=args.workers, remote=remote,
                      broker=args.broker, probe_every=args.probe_every, plot=plot,
                      timeline=timeline,
                      speed_ms=(speed_before, speed_check_ms()),
                      prime=(args.prime, args.rate[0]) if args.prime > 0 else None,
                      priority=priority, busy=(args.busy_host, spinner_priority),
                      reproduce=shlex.join(["python", "-m", "load_tests.bench_alerts",
                                            *sys.argv[1:]]))
    write_report(args.output, text)
    if plot is not None:
        plot_points(points, plot)
    if timeline is not None:
        plot_timeline(points, timeline)


if __name__ == "__main__":
    main()
