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
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import orjson
import redis

from api.keys import create_key_sync
from feature_store.keys import METRICS_KEY, customers_key
from load_tests.measure import (
    cpu_seconds_from_stat,
    percentile,
    speed_check_line,
    speed_check_ms,
    write_report,
)
from load_tests.scheduling import permitted_priority, realtime_argv, set_realtime
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings
from stream.topics import create_topics

RESULTS = Path(__file__).resolve().parent / "results" / "API.md"
VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.12.0"
TOOLS = Path(os.environ.get("CRM_BENCH_TOOLS", Path.home() / ".cache" / "crm-bench" / "bin"))


@dataclass
class Outcome:
    client: str
    latencies_ms: list[float] = field(default_factory=list)  # from when each was due
    service_ms: list[float] = field(default_factory=list)  # from when each was sent
    late_ms: list[float] = field(default_factory=list)  # how late the client sent each
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    elapsed_s: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def fail(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


class Progress:
    """One line a second while the load runs: answered, errors, p50/p99 of that second."""

    def __init__(self, outcome: Outcome, quiet: bool) -> None:
        self.outcome, self.quiet = outcome, quiet
        self.started = time.monotonic()
        self.next_at = self.started + 1
        self.mark = (0, 0)

    def tick(self) -> None:
        now = time.monotonic()
        if self.quiet or now < self.next_at:
            return
        self.next_at = now + 1
        done, errors = len(self.outcome.latencies_ms), self.outcome.error_count
        recent = self.outcome.latencies_ms[self.mark[0]:]
        print(f"  {now - self.started:5.1f} s: {done - self.mark[0]:5d} answered, "
              f"{errors - self.mark[1]} errors, p50 {percentile(recent, 50):7.2f} ms, "
              f"p99 {percentile(recent, 99):8.2f} ms", flush=True)
        self.mark = (done, errors)


# -- the Python client (fallback) ------------------------------------------------------------

async def _python_load(url: str, key: str, ids: list[str], rate: float, duration_s: float,
                       quiet: bool) -> Outcome:
    total = int(rate * duration_s)
    outcome = Outcome(client="aiohttp (Python, in the benchmark's process)", sent=total)
    progress = Progress(outcome, quiet)
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(base_url=url, connector=connector, headers=headers) as http:

        async def one(index: int, due: float) -> None:
            sent = time.perf_counter()
            try:
                async with http.get(f"/v1/customers/{ids[index % len(ids)]}") as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError as exc:
                outcome.fail(type(exc).__name__)
                return
            done = time.perf_counter()
            if status == 200:
                outcome.latencies_ms.append((done - due) * 1000)
                outcome.service_ms.append((done - sent) * 1000)
                outcome.late_ms.append((sent - due) * 1000)
            else:
                outcome.fail(f"HTTP {status}")

        tasks = []
        start = time.perf_counter() + 0.05
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, due)))
            progress.tick()
        await asyncio.gather(*tasks)
        outcome.elapsed_s = time.perf_counter() - start
    return outcome


def _run_python(url: str, key: str, ids: list[str], rate: float, duration_s: float,
                quiet: bool) -> Outcome:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(_python_load(url, key, ids, rate, duration_s, quiet))
    return uvloop.run(_python_load(url, key, ids, rate, duration_s, quiet))


# -- vegeta ----------------------------------------------------------------------------------

def _go() -> str | None:
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)


def install_vegeta(*, verbose: bool = True) -> Path | None:
    """``vegeta`` from the tools cache, built there first if Go is installed; else ``None``.

    Built from the module's own ``go.mod`` (``go mod download`` + ``go build``), not
    ``go install ...@version``, which also asks the proxy for the module's version list.
    """
    binary = TOOLS / "vegeta"
    if os.access(binary, os.X_OK):
        return binary
    go = _go()
    if go is None:
        if verbose:
            print("vegeta is not installed and Go is not available", file=sys.stderr)
        return None
    if verbose:
        print(f"building vegeta {VEGETA_VERSION} into {TOOLS} (once) ...", flush=True)
    try:
        info = orjson.loads(subprocess.run(
            [go, "mod", "download", "-json", f"{VEGETA_MODULE}@{VEGETA_VERSION}"],
            check=True, capture_output=True, timeout=300).stdout)
        with tempfile.TemporaryDirectory(prefix="vegeta-src-") as tmp:
            source = Path(tmp) / "vegeta"
            shutil.copytree(info["Dir"], source)
            for path in source.rglob("*"):  # the module cache is read-only
                path.chmod(path.stat().st_mode | 0o200)
            TOOLS.mkdir(parents=True, exist_ok=True)
            subprocess.run([go, "build", "-o", str(binary), "."], cwd=source, check=True,
                           capture_output=True, timeout=900,
                           env={**os.environ, "GOFLAGS": "-mod=mod"})
    except (subprocess.SubprocessError, OSError, KeyError, orjson.JSONDecodeError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(f"could not build vegeta: {exc} {detail.decode(errors='replace')[-500:]}",
              file=sys.stderr)
        return None
    return binary


def _vegeta_results(stream: io.TextIOBase) -> Iterator[list[str]]:
    yield from csv.reader(stream)


def _run_vegeta(vegeta: Path, url: str, key: str, ids: list[str], rate: float,
                duration_s: float, work: Path, quiet: bool, priority: int = 0) -> Outcome:
    targets = work / "targets.txt"
    targets.write_text("".join(f"GET {url}/v1/customers/{cid}\nAuthorization: Bearer {key}\n\n"
                               for cid in ids))
    outcome = Outcome(client=f"vegeta {VEGETA_VERSION} (Go, constant rate, its own process)")
    progress = Progress(outcome, quiet)
    attack = subprocess.Popen(
        [*realtime_argv(priority), str(vegeta), "attack", f"-targets={targets}", "-format=http",
         f"-rate={rate:g}/1s", f"-duration={duration_s:g}s", "-max-body=0", "-timeout=30s",
         "-keepalive=true"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    encode = subprocess.Popen([*realtime_argv(priority), str(vegeta), "encode", "--to", "csv"],
                              stdin=attack.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert attack.stdout is not None and encode.stdout is not None
    attack.stdout.close()  # encode owns it now
    interval_ns = 1e9 / rate
    rows: list[tuple[int, int, int, str]] = []  # seq, sent (ns), latency (ns), error
    for row in _vegeta_results(encode.stdout):  # type: ignore[arg-type]
        timestamp, code, latency, error, seq = int(row[0]), int(row[1]), int(row[2]), row[5], (
            int(row[8]))
        if code != 200:
            error = error or f"HTTP {code}"
        rows.append((seq, timestamp, latency, error))
        if error:
            outcome.fail(error.split(":")[-1].strip()[:60])
        else:  # provisional (from when it was sent) until the start is known, for progress
            outcome.latencies_ms.append(latency / 1e6)
        progress.tick()
    encode.wait()
    attack.wait()
    if attack.returncode or encode.returncode:
        assert attack.stderr is not None and encode.stderr is not None
        raise SystemExit(f"vegeta failed: {attack.stderr.read().decode()[-800:]} "
                         f"{encode.stderr.read()[-800:]}")
    # vegeta's pacer sends request n (0-based) at began + (n + 1) * interval; ``began`` is not
    # in the results, so take the latest start consistent with every send time. That start is
    # never later than the true one: latencies from it are never shorter than from the truth.
    start = min(sent - (seq + 1) * interval_ns for seq, sent, _, _ in rows)
    outcome.latencies_ms, outcome.service_ms, outcome.late_ms = [], [], []
    for seq, sent, latency, error in rows:
        if error:
            continue
        due = start + (seq + 1) * interval_ns
        outcome.latencies_ms.append((sent + latency - due) / 1e6)
        outcome.service_ms.append(latency / 1e6)
        outcome.late_ms.append((sent - due) / 1e6)
    outcome.sent = len(rows)
    last_due = start + len(rows) * interval_ns
    outcome.elapsed_s = (max((s + lat for _, s, lat, _ in rows), default=last_due) - start) / 1e9
    return outcome


# -- what ran on the machine -----------------------------------------------------------------

def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process: pid -> (command line, seconds)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found[int(entry.name)] = (cmdline or stat[stat.index("(") + 1:stat.rindex(")")],
                                  cpu_seconds_from_stat(stat))
    return found


def _label(cmdline: str, roles: dict[int, str], pid: int) -> str:
    if pid in roles:
        return roles[pid]
    short = cmdline.replace(sys.executable, "python").replace(str(Path.home()), "~")
    return f"other: `{short[:70]}`"


def _machine_table(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                   seconds: float, roles: dict[int, str]) -> list[str]:
    used: dict[str, float] = {}
    for pid, (cmdline, cpu) in after.items():
        delta = cpu - before.get(pid, (cmdline, 0.0))[1]
        if delta > 0.01 * seconds:
            name = _label(cmdline, roles, pid)
            used[name] = used.get(name, 0.0) + delta
    lines = ["| process | CPU (% of one core) |", "|---|---:|"]
    for name, cpu in sorted(used.items(), key=lambda item: -item[1])[:12]:
        lines.append(f"| {name} | {cpu / seconds * 100:.0f} |")
    return lines


def _roles(groups: dict[str, int], client_pids: dict[str, int]) -> dict[int, str]:
    """pid -> role, for the process groups started here (``groups``: name -> process group
    id) with all their children (uvicorn's workers), and the ``client_pids``."""
    roles = {pid: name for name, pid in client_pids.items()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pgrp = int(stat[stat.rindex(")") + 2:].split()[2])
        for name, group in groups.items():
            if pgrp == group:
                roles[int(entry.name)] = name
    return roles


# -- in-process cost -------------------------------------------------------------------------

def in_process_cost(settings: Settings, key: str, ids: list[str], requests: int = 2000,
                    ) -> tuple[float, float]:
    """(wall µs, CPU µs) per ``GET /v1/customers/{id}`` called on the ASGI app directly, one
    at a time, against the benchmark's Redis: the app's own cost without HTTP or a client."""
    from api.main import create_app
    from api.settings import ApiSettings

    async def run() -> tuple[float, float]:
        app = create_app(settings, ApiSettings())  # its producer is made on first use: never
        headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
        failures: list[str] = []

        async def call(index: int) -> None:
            path = f"/v1/customers/{ids[index % len(ids)]}"
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "GET", "scheme": "http", "path": path,
                     "raw_path": path.encode(), "query_string": b"", "root_path": "",
                     "headers": headers, "client": ("127.0.0.1", 1),
                     "server": ("127.0.0.1", 80), "state": {}}

            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, object]) -> None:
                if message["type"] == "http.response.start" and message["status"] != 200:
                    failures.append(f"{message['status']} on {path}")

            await app(scope, receive, send)  # type: ignore[arg-type]

        for index in range(200):
            await call(index)
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(requests):
            await call(index)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await app.state.crm.redis.aclose()
        if failures:
            raise SystemExit(f"{len(failures)} in-process requests failed: {failures[:5]}")
        return wall / requests * 1e6, cpu / requests * 1e6

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run())
    return uvloop.run(run())


# -- the run ---------------------------------------------------------------------------------

def _processed(store: redis.Redis) -> int:
    """Input messages the workers have handled so far, every outcome."""
    return sum(int(v) for v in store.hvals(METRICS_KEY))  # type: ignore[union-attr]


def _wait_until_idle(store: redis.Redis, timeout_s: float = 30.0, quiet_s: float = 1.0
                     ) -> float:
    """Wait until the workers' processed count has not moved for ``quiet_s`` (the backlog is
    drained); the ``time.monotonic()`` when it last moved, to a quarter of a second."""
    deadline, last, moved = time.monotonic() + timeout_s, _processed(store), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - moved < quiet_s:
        time.sleep(0.25)
        count = _processed(store)
        if count != last:
            last, moved = count, time.monotonic()
    return moved


def _crm(name: str, args: list[str], env: dict[str, str], work: Path, priority: int = 0
         ) -> ManagedProcess:
    return ManagedProcess(name=name, argv=[*realtime_argv(priority), sys.executable, "-m", "crm",
                                           *args],
                          log_path=work / f"{name}.log", env=env).start()


@dataclass
class RunInfo:
    rate: float
    customers: int
    sim_rate: float
    processed: int
    load_seconds: float
    api_workers: int
    in_process: tuple[float, float]
    machine: list[str]
    load_average: float
    broker: str = "the embedded broker"
    speed_ms: tuple[float, float] | None = None
    priority: int = 0
    redis_prioritised: bool = True
    options: str = ""
    #: (events the worker handled after the load, seconds until it was idle) once the shop
    #: stopped at the end of the load.
    backlog: tuple[int, float] = (0, 0.0)


def _latency_cells(values: list[float]) -> str:
    """p50, p90, p99 and max of ``values`` as a table row's last four cells."""
    return (f"{percentile(values, 50):.2f} | {percentile(values, 90):.2f} | "
            f"{percentile(values, 99):.2f} | {max(values, default=float('nan')):.2f} |")


def _phase_row(label: str, outcome: Outcome) -> str:
    served = len(outcome.latencies_ms) / (outcome.elapsed_s or 1)
    return (f"| {label} | {served:,.0f} | {outcome.error_count} | "
            f"{_latency_cells(outcome.latencies_ms)}")


def _scheduling_sentence(info: RunInfo) -> str:
    """How the CPU was shared, and whether the worker kept up with the shop meanwhile."""
    offered = info.sim_rate * info.load_seconds
    kept = info.processed / offered if offered else 0.0
    events, seconds = info.backlog
    worker = (f"The worker handled {info.processed / (info.load_seconds or 1):,.0f} of the "
              f"shop's {info.sim_rate:,.0f} events/s during the load ({kept:.0%})"
              + (", so it kept up" if kept >= 0.95 else "; the rest waited in Kafka")
              + f". When the shop stopped after the load, the worker handled {events:,} more "
              f"events and was idle {seconds:.1f} s later.")
    if not info.priority:
        return f"Default scheduling for every process. {worker}"
    read_path = ("the API's processes, redis-server and the load client" if
                 info.redis_prioritised else "the API's processes and the load client; the "
                 "Redis at CRM_REDIS_URL, not started here, kept its own")
    return (f"The read path ({read_path}) ran at real-time round-robin priority "
            f"{info.priority} (`chrt --rr {info.priority}`), so the worker, broker and "
            f"simulator yield the CPU to it. {worker}")


def _report(outcome: Outcome, info: RunInfo, baseline: Outcome | None = None) -> str:
    rows = [("all requests (from when each was due)", outcome.latencies_ms),
            ("service time (from when each was sent)", outcome.service_ms),
            ("client lateness (sent after due)", outcome.late_ms)]
    seconds = outcome.elapsed_s or 1
    achieved = len(outcome.latencies_ms) / seconds
    p99 = percentile(outcome.latencies_ms, 99)
    errors = ", ".join(f"{count} {reason}" for reason, count in outcome.errors.items())
    lines = [
        "# API latency: GET /v1/customers/{id}", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Open-loop load from "
        f"{outcome.client} at {info.rate:,.0f} requests/s for {outcome.elapsed_s:.1f} s over "
        f"{info.customers:,} customers, while one worker consumed the simulated shop at "
        f"{info.sim_rate:,.0f} events/s ({info.processed:,} events processed during the load)"
        f". The API ran as `crm api` (uvicorn, uvloop, "
        f"httptools, no access log) with {info.api_workers} process"
        f"{'es' if info.api_workers > 1 else ''}; every request carried a key with a rate "
        f"limit, so each was counted in Redis. Everything ({info.broker}, redis-server, "
        "worker, simulator, API and the load client) ran on this one machine over loopback; "
        f"load average {info.load_average:.1f} at the end (other work on the machine counts "
        "too).", "", _scheduling_sentence(info), "",
        "Latency of each request is counted from when the schedule said it was due, so a late "
        "client or a slow server cannot hide it (no coordinated omission).", "",
        "| measure | requests | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {label} | {len(values):,} | {_latency_cells(values)}" for label, values in rows]
    lines += [
        "", f"Achieved {achieved:,.0f} successful requests/s of {info.rate:,.0f} scheduled; "
        f"{outcome.error_count} errors of {outcome.sent:,}{f' ({errors})' if errors else ''}. "
        f"Goal p99 <= 10 ms: **{'met' if p99 <= 10 else 'missed'}** ({p99:.2f} ms). Mean "
        f"service time {statistics.fmean(outcome.service_ms or [0]):.2f} ms.", "",
        *([f"The same load with the shop paused (the worker idle, {baseline.elapsed_s:.0f} s "
           "just before, latency from when each was due), against the run above:", "",
           "| phase | served/s | errors | p50 ms | p90 ms | p99 ms | max ms |",
           "|---|---:|---:|---:|---:|---:|---:|",
           _phase_row("shop paused, worker idle", baseline),
           _phase_row(f"worker consuming {info.sim_rate:,.0f} events/s", outcome), ""]
          if baseline is not None else []),
        f"In-process cost (the ASGI app called directly, one request at a time, same Redis, "
        f"before the load): {info.in_process[0]:.0f} µs per request, "
        f"{info.in_process[1]:.0f} µs of CPU.", "",
        "CPU used on the machine during the load:", "", *info.machine, "",
        *([speed_check_line(*info.speed_ms), ""] if info.speed_ms else []),
        f"Reproduce: `python -m load_tests.bench_api {info.options}` (`make bench-api` runs "
        "the defaults on the embedded broker).", ""]
    return "\n".join(lines)


def main() -> None:
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
    args = parser.parse_args()

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
        worker = groups["worker"] = _crm("worker", ["worker"], env, work)
        stack.callback(worker.stop)
        port = free_port()
        api = groups["API (crm api)"] = _crm(
            "api", ["api", "--port", str(port), "--workers", str(args.api_workers)],
            {**env, "CRM_API_WORKERS": str(args.api_workers)}, work, priority)
        stack.callback(api.stop)
        url = f"http://127.0.0.1:{port}"
        api.wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30,
                       what="/healthz")
        def start_simulator(seed: int) -> ManagedProcess:
            simulator = groups["simulator"] = _crm(
                "simulator", ["simulate", "--rate", str(args.sim_rate), "--customers",
                              str(args.customers), "--seed", str(seed)], env, work)
            stack.callback(simulator.stop)
            return simulator

        simulator = start_simulator(11)
        store = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 120
        print("waiting for the worker to fill Redis ...", flush=True)
        while store.zcount(customers_key("default"), "-inf", "+inf") < min(
                600, args.customers // 2):
            if time.monotonic() > deadline or not worker.is_running():
                raise SystemExit(f"the worker did not fill Redis:\n{worker.log_tail()}")
            time.sleep(0.5)
        members: list[bytes] = store.zrange(customers_key("default"), 0, -1)  # type: ignore[assignment]
        # Known customers only: an anonymous visitor's profile goes once they are identified.
        ids = [member.decode() for member in members if not member.startswith(b"anon:")]
        # A limit well above the rate, and above what the back-to-back in-process requests
        # reach in one window: every request is counted, none is refused.
        key = create_key_sync(settings, tenant="default", scopes="read", name="bench",
                              rate_limit=max(int(args.rate * 10), 10_000))
        in_process = in_process_cost(settings, key, ids)
        print(f"in-process: {in_process[0]:.0f} µs per request ({in_process[1]:.0f} µs CPU)",
              flush=True)

        def load(seconds: float, quiet: bool) -> Outcome:
            if vegeta is not None:
                return _run_vegeta(vegeta, url, key, ids, args.rate, seconds, work, quiet,
                                   priority)
            return _run_python(url, key, ids, args.rate, seconds, quiet)

        speed_before = speed_check_ms()
        baseline = None
        if args.baseline_duration > 0:
            simulator.stop()
            _wait_until_idle(store)
            print(f"baseline: {args.rate:,.0f} requests/s for {args.baseline_duration:g} s "
                  "with the shop paused ...", flush=True)
            load(2.0, True)
            baseline = load(args.baseline_duration, args.quiet)
            # A new seed: the same customers, but events the worker has not seen yet.
            simulator = start_simulator(12)
            time.sleep(3)
        print("warm-up (2 s, not counted) ...", flush=True)
        load(2.0, True)
        pgids = {name: process.pid for name, process in groups.items()
                 if process.is_running() and process.pid is not None}
        if kafka_pgid is not None:
            pgids["broker (Apache Kafka)"] = kafka_pgid
        roles = _roles(pgids, {"benchmark (this process)": os.getpid()})
        print(f"load: {args.rate:,.0f} requests/s for {args.duration:g} s ...", flush=True)
        before = _processed(store)
        cpu_before, started = _cpu_by_process(), time.monotonic()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        outcome = load(args.duration, args.quiet)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after, seconds = _cpu_by_process(), time.monotonic() - started
        processed = _processed(store) - before
        simulator_ran = simulator.is_running()
        # The shop stops: how long the worker takes to finish what waited in Kafka.
        simulator.stop()
        stopped = time.monotonic()
        caught_up = _wait_until_idle(store, timeout_s=300)
        backlog = _processed(store) - before - processed
        if vegeta is not None:  # exited by now: its CPU is in our children's usage
            client_cpu = (children_after.ru_utime + children_after.ru_stime
                          - children_before.ru_utime - children_before.ru_stime)
            cpu_after[-1] = ("load client (vegeta attack + encode)", client_cpu)
            roles[-1] = "load client (vegeta attack + encode)"
        if not simulator_ran and processed == 0:
            print("warning: the simulator was not running during the load", file=sys.stderr)
        info = RunInfo(rate=args.rate, customers=len(ids), sim_rate=args.sim_rate,
                       processed=processed, load_seconds=seconds,
                       backlog=(backlog, max(0.0, caught_up - stopped)),
                       api_workers=args.api_workers, priority=priority,
                       redis_prioritised=bool(priority) and "redis-server" in groups,
                       options=(f"--rate {args.rate:g} --duration {args.duration:g} "
                                f"--sim-rate {args.sim_rate:g} --api-workers {args.api_workers} "
                                f"--broker {args.broker} --realtime-priority {priority}"),
                       in_process=in_process,
                       machine=_machine_table(cpu_before, cpu_after, seconds, roles),
                       load_average=os.getloadavg()[0],
                       broker=("a cluster given by CRM_KAFKA_BOOTSTRAP"
                               if os.environ.get("CRM_KAFKA_BOOTSTRAP") else
                               "Apache Kafka (one KRaft node)" if args.broker == "apache" else
                               "the embedded broker"),
                       speed_ms=(speed_before, speed_check_ms()))
        report = _report(outcome, info, baseline)
    write_report(args.output, report)


if __name__ == "__main__":
    main()
