"""Benchmark: GET /v1/customers/{id} at a fixed request rate while a worker consumes traffic.

Starts (on loopback only) an embedded broker, a redis-server, one ``crm worker``, the
simulated web shop (``crm simulate``) and the API (``crm api``: uvicorn with uvloop and
httptools, ``--api-workers`` processes, no access log), then sends requests on an open schedule:
request *i* is due at ``start + i / rate`` whether or not earlier ones returned, and its latency
is counted from when it was due (no coordinated omission), so a slow server or a late client
cannot hide latency. First the same load runs for ``--baseline-duration`` seconds with the
shop paused (the worker idle), so one report shows what sharing the machine with shop traffic
costs the API.

The read path (the API's processes, redis-server and the load client) runs at real-time
round-robin priority ``--realtime-priority`` (``chrt --rr``; 0 for the default scheduler),
and the report says how many of the shop's events the worker kept up with. Why: on two cores
the API, worker, broker, Redis and client together want about all of the machine, and under the
default scheduler a request that waits behind the worker for a core makes the next ones queue,
vegeta opens more connections, and the API falls into seconds of latency it does not leave
(served 627-715 of 1,000/s in runs whose paused phase had p99 27-30 ms). With the read path
first, the worker yields instead, and Kafka holds its backlog until it catches up. The load
client is in the read path because a real one runs elsewhere: starved here, it would add its
own waits to the latencies it measures.

The load comes from `vegeta <https://github.com/tsenart/vegeta>`_ (Go, constant-rate) when it
can be had: found in ``$CRM_BENCH_TOOLS`` (default ``~/.cache/crm-bench/bin``), else built there
from the Go module proxy when ``go`` is installed (``--install-client`` or ``make bench-tools``
does only that). A Python client at 1,000 requests/s costs a large share of one of this
machine's two cores, taken from the server it measures; the aiohttp client is the fallback
(``--client python``).

    python -m load_tests.bench_api --rate 1000 --duration 20

Writes ``load_tests/results/API.md``. Uses ``CRM_KAFKA_BOOTSTRAP`` / ``CRM_REDIS_URL`` when set.

The load clients and what the benchmark reads of the worker are in :mod:`load_tests.api_load`,
the in-process cost in
:mod:`load_tests.api_in_process`, the report in :mod:`load_tests.api_report`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from load_tests.api_in_process import in_process_cost
from load_tests.api_load import (
    Outcome,
    install_vegeta,
    known_customers,
    processed,
    run_python,
    run_vegeta,
    wait_until_idle,
)
from load_tests.api_report import RunInfo, machine_table, report
from load_tests.commands import create_key, create_topics, start_crm
from load_tests.measure import cpu_by_process, process_roles, speed_check_ms
from load_tests.report import write_report
from load_tests.scheduling import permitted_priority, set_realtime
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "API.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--sim-rate", type=float, default=500.0, help="shop events/s")
    parser.add_argument("--baseline-duration", type=float, default=10.0,
                        help="seconds of the same load with the shop paused first, so the "
                             "report shows what sharing the machine with the worker costs "
                             "(0: none)")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--broker", choices=("embedded", "apache"), default="embedded",
                        help="which Kafka to start here (unless CRM_KAFKA_BOOTSTRAP): the "
                        "embedded broker's CPU grows with the data it holds")
    parser.add_argument("--api-workers", type=int, default=2,
                        help="API processes (CRM_API_WORKERS)")
    parser.add_argument("--realtime-priority", type=int, default=10, metavar="N",
                        help="real-time round-robin priority of the API, redis-server and the "
                             "load client (chrt --rr; needs root or CAP_SYS_NICE); 0: the "
                             "default scheduler for all")
    parser.add_argument("--client", choices=("auto", "vegeta", "python"), default="auto",
                        help="auto: vegeta when it can be had, else the Python client")
    parser.add_argument("--install-client", action="store_true",
                        help="only build vegeta into the tools cache, then exit")
    parser.add_argument("--quiet", action="store_true", help="no per-second progress")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the processes' logs and data here (default: a temp dir)")
    return parser


@dataclass
class Stack:
    """The processes the benchmark runs: broker and redis-server unless given, the topics, a
    worker and the API, each stopped when the run's ``ExitStack`` closes."""

    settings: Settings
    env: dict[str, str]
    work: Path
    url: str
    #: What was started here, by role, for the machine's CPU table (uvicorn's workers and the
    #: broker's children count with their process group).
    groups: dict[str, ManagedProcess] = field(default_factory=dict)
    kafka_pgid: int | None = None


def start_stack(stack: ExitStack, work: Path, args: argparse.Namespace, priority: int) -> Stack:
    groups: dict[str, ManagedProcess] = {}
    bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("CRM_REDIS_URL")
    kafka_pgid: int | None = None
    if not bootstrap and args.broker == "apache":
        from stream.apache_kafka import ApacheKafka

        kafka = ApacheKafka(data_dir=work / "apache-kafka")
        bootstrap = kafka.start()
        stack.callback(kafka.stop)
        kafka_pgid = kafka.pid  # the JVM leads its own process group
    elif not bootstrap:
        from stream.devstack import EmbeddedBroker

        broker = EmbeddedBroker(work_dir=work)
        bootstrap = broker.start()
        stack.callback(broker.stop)
        groups["broker"] = broker.process
    if not redis_url:
        from stream.devstack import RedisServer

        server = RedisServer(work_dir=work, persist=False)
        redis_url = server.start()
        stack.callback(server.stop)
        groups["redis-server"] = server.process
        if priority:
            set_realtime(server.process.pid, priority)
    run_id = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url,
                        topic_prefix=f"bench{run_id}.", app_id=f"bench-{run_id}")
    create_topics(settings)
    (work / "checkpoints").mkdir()
    env = settings.model_copy(update={"checkpoint_dir": work / "checkpoints",
                                       "log_level": "WARNING"}).to_env()
    worker = groups["worker"] = start_crm("worker", ["worker"], env=env, work=work)
    stack.callback(worker.stop)
    port = free_port()
    api = groups["API (crm api)"] = start_crm(
        "api", ["api", "--port", str(port), "--workers", str(args.api_workers)],
        env={**env, "CRM_API_WORKERS": str(args.api_workers)}, work=work, priority=priority)
    stack.callback(api.stop)
    url = f"http://127.0.0.1:{port}"
    api.wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30,
                   what="/healthz")
    return Stack(settings=settings, env=env, work=work, url=url, groups=groups,
                 kafka_pgid=kafka_pgid)


def start_simulator(run: Stack, stack: ExitStack, args: argparse.Namespace,
                    seed: int) -> ManagedProcess:
    """``crm simulate`` at the shop's rate; a new seed sends the same customers new events."""
    simulator = run.groups["simulator"] = start_crm(
        "simulator", ["simulate", "--rate", str(args.sim_rate), "--customers",
                      str(args.customers), "--seed", str(seed)], env=run.env, work=run.work)
    stack.callback(simulator.stop)
    return simulator


def main() -> None:
    args = _parser().parse_args()
    if args.install_client:
        binary = install_vegeta()
        print(binary or "vegeta unavailable; the benchmark will use its Python client")
        raise SystemExit(0 if binary else 1)
    vegeta = None if args.client == "python" else install_vegeta()
    if args.client == "vegeta" and vegeta is None:
        raise SystemExit("vegeta is unavailable (see above)")
    priority = permitted_priority(args.realtime_priority)
    if vegeta is None and priority:
        print("the Python client runs in this process: default scheduling for all", file=sys.stderr)
        priority = 0

    with ExitStack() as stack:
        if args.work_dir:
            work = args.work_dir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        run = start_stack(stack, work, args, priority)
        url = run.url
        simulator = start_simulator(run, stack, args, seed=11)
        print("waiting for the worker to fill Redis ...", flush=True)
        ids = known_customers(run.settings, run.groups["worker"],
                              at_least=min(600, args.customers // 2))
        # A limit well above the rate, and above what the back-to-back in-process requests
        # reach in one window: every request is counted, none is refused.
        key = create_key(run.settings, tenant="default", scopes="read", name="bench",
                         rate_limit=max(int(args.rate * 10), 10_000))
        in_process = in_process_cost(run.settings, key, ids)
        print(f"in-process: {in_process[0]:.0f} µs per request ({in_process[1]:.0f} µs CPU)",
              flush=True)

        def load(seconds: float, quiet: bool) -> Outcome:
            if vegeta is not None:
                return run_vegeta(vegeta, url, key, ids, args.rate, seconds, work, quiet,
                                  priority)
            return run_python(url, key, ids, args.rate, seconds, quiet)

        speed_before = speed_check_ms()
        baseline = None
        if args.baseline_duration > 0:
            simulator.stop()
            wait_until_idle(url)
            print(f"baseline: {args.rate:,.0f} requests/s for {args.baseline_duration:g} s "
                  "with the shop paused ...", flush=True)
            load(2.0, True)
            baseline = load(args.baseline_duration, args.quiet)
            # A new seed: the same customers, but events the worker has not seen yet.
            simulator = start_simulator(run, stack, args, seed=12)
            time.sleep(3)
        print("warm-up (2 s, not counted) ...", flush=True)
        load(2.0, True)
        pgids = {name: process.pid for name, process in run.groups.items()
                 if process.is_running() and process.pid is not None}
        if run.kafka_pgid is not None:
            pgids["broker (Apache Kafka)"] = run.kafka_pgid
        roles = process_roles(pgids, {"benchmark (this process)": os.getpid()})
        print(f"load: {args.rate:,.0f} requests/s for {args.duration:g} s ...", flush=True)
        before = processed(url)
        cpu_before, started = cpu_by_process(), time.monotonic()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        outcome = load(args.duration, args.quiet)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after, seconds = cpu_by_process(), time.monotonic() - started
        during = processed(url) - before
        simulator_ran = simulator.is_running()
        # The shop stops: how long the worker takes to finish what waited in Kafka.
        simulator.stop()
        stopped = time.monotonic()
        caught_up = wait_until_idle(url, timeout_s=300)
        backlog = processed(url) - before - during
        if vegeta is not None:  # exited by now: its CPU is in our children's usage
            client_cpu = (children_after.ru_utime + children_after.ru_stime
                          - children_before.ru_utime - children_before.ru_stime)
            cpu_after[-1] = ("load client (vegeta attack + encode)", client_cpu)
            roles[-1] = "load client (vegeta attack + encode)"
        if not simulator_ran and during == 0:
            print("warning: the simulator was not running during the load", file=sys.stderr)
        info = RunInfo(rate=args.rate, customers=len(ids), sim_rate=args.sim_rate,
                       processed=during, load_seconds=seconds,
                       backlog=(backlog, max(0.0, caught_up - stopped)),
                       api_workers=args.api_workers, priority=priority,
                       redis_prioritised=bool(priority) and "redis-server" in run.groups,
                       options=(f"--rate {args.rate:g} --duration {args.duration:g} "
                                f"--sim-rate {args.sim_rate:g} --api-workers {args.api_workers} "
                                f"--broker {args.broker} --realtime-priority {priority}"),
                       in_process=in_process,
                       machine=machine_table(cpu_before, cpu_after, seconds, roles),
                       load_average=os.getloadavg()[0],
                       broker=("a cluster given by CRM_KAFKA_BOOTSTRAP"
                               if os.environ.get("CRM_KAFKA_BOOTSTRAP") else
                               "Apache Kafka (one KRaft node)" if args.broker == "apache" else
                               "the embedded broker"),
                       speed_ms=(speed_before, speed_check_ms()))
        text = report(outcome, info, baseline)
    write_report(args.output, text)


if __name__ == "__main__":
    main()
