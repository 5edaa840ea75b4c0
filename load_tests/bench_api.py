"""Benchmark: GET /v1/customers/{id} at a fixed request rate while a worker consumes traffic.

Starts (on loopback only) an embedded broker, a redis-server, one ``crm worker``, the
simulated web shop (``crm simulate``) and the API (uvicorn), then sends requests on an open
schedule (request *i* leaves at ``start + i / rate``, whether or not earlier ones returned, so a
slow server cannot hide its latency by slowing the client) and reports percentiles.

    python -m load_tests.bench_api --rate 1000 --duration 20

Writes ``load_tests/results/API.md``. Uses ``CRM_KAFKA_BOOTSTRAP`` / ``CRM_REDIS_URL`` when set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import redis

from api.keys import create_key_sync
from feature_store.keys import METRICS_KEY, customers_key
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings
from stream.topics import create_topics

RESULTS = Path(__file__).resolve().parent / "results" / "API.md"


@dataclass
class Outcome:
    latencies_ms: list[float]  # from the moment the request was due to its full answer
    service_ms: list[float]  # from the moment it was actually sent
    errors: int
    sent: int
    elapsed_s: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


async def _load(url: str, key: str, ids: list[str], rate: float, duration_s: float) -> Outcome:
    total = int(rate * duration_s)
    latencies: list[float] = []
    service: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=128, keepalive_timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(base_url=url, connector=connector, headers=headers) as http:

        async def one(index: int, due: float) -> None:
            nonlocal errors
            sent = time.perf_counter()
            try:
                async with http.get(f"/v1/customers/{ids[index % len(ids)]}") as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            done = time.perf_counter()
            if ok:
                latencies.append((done - due) * 1000)
                service.append((done - sent) * 1000)
            else:
                errors += 1

        tasks = []
        start = time.perf_counter() + 0.05
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return Outcome(latencies, service, errors, total, elapsed)


def _crm(name: str, args: list[str], env: dict[str, str], work: Path) -> ManagedProcess:
    return ManagedProcess(name=name, argv=[sys.executable, "-m", "crm", *args],
                          log_path=work / f"{name}.log", env=env).start()


def _report(outcome: Outcome, *, rate: float, customers: int, sim_rate: float,
            processed: int) -> str:
    rows = [("all requests (from when each was due)", outcome.latencies_ms),
            ("service time (from when each was sent)", outcome.service_ms)]
    lines = [
        "# API latency: GET /v1/customers/{id}", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Open-loop client "
        f"(aiohttp) at {rate:,.0f} requests/s for {outcome.elapsed_s:.1f} s over "
        f"{customers:,} customers, while one worker consumed the simulated shop at "
        f"{sim_rate:,.0f} events/s ({processed:,} events processed during the run). "
        "Everything (embedded broker, redis-server, worker, simulator, API with one uvicorn "
        "process, and the client) ran on this one machine over loopback; load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine counts too).", "",
        "| measure | requests | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, values in rows:
        lines.append(f"| {label} | {len(values):,} | {_percentile(values, 50):.2f} | "
                     f"{_percentile(values, 90):.2f} | {_percentile(values, 99):.2f} | "
                     f"{max(values, default=float('nan')):.2f} |")
    achieved = len(outcome.latencies_ms) / outcome.elapsed_s if outcome.elapsed_s else 0
    p99 = _percentile(outcome.latencies_ms, 99)
    lines += ["", f"Achieved {achieved:,.0f} successful requests/s; {outcome.errors} errors "
              f"of {outcome.sent:,}. Goal p99 <= 10 ms: **{'met' if p99 <= 10 else 'missed'}** "
              f"({p99:.2f} ms). Mean service time "
              f"{statistics.fmean(outcome.service_ms or [0]):.2f} ms.", "",
              "Reproduce: `python -m load_tests.bench_api --rate 1000 --duration 20`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--sim-rate", type=float, default=500.0, help="shop events/s")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP")
        redis_url = os.environ.get("CRM_REDIS_URL")
        if not bootstrap:
            from stream.devstack import EmbeddedBroker

            broker = EmbeddedBroker(work_dir=work)
            bootstrap = broker.start()
            stack.callback(broker.stop)
        if not redis_url:
            from stream.devstack import RedisServer

            server = RedisServer(work_dir=work, persist=False)
            redis_url = server.start()
            stack.callback(server.stop)
        run_id = uuid.uuid4().hex[:6]
        settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url,
                            topic_prefix=f"bench{run_id}.", app_id=f"bench-{run_id}")
        create_topics(settings)
        env = settings.model_copy(update={"checkpoint_dir": work / "checkpoints",
                                           "log_level": "WARNING"}).to_env()
        worker = _crm("worker", ["worker"], env, work)
        stack.callback(worker.stop)
        port = free_port()
        api = ManagedProcess(name="api", log_path=work / "api.log", env=env, argv=[
            sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host",
            "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
            "--timeout-graceful-shutdown", "3"]).start()
        stack.callback(api.stop)
        url = f"http://127.0.0.1:{port}"
        api.wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30,
                       what="/healthz")
        simulator = _crm("simulator", ["simulate", "--rate", str(args.sim_rate), "--customers",
                                       str(args.customers), "--seed", "11"], env, work)
        stack.callback(simulator.stop)
        store = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 120
        while store.zcard(customers_key("default")) < min(500, args.customers // 2):
            if time.monotonic() > deadline or not worker.is_running():
                raise SystemExit(f"the worker did not fill Redis:\n{worker.log_tail()}")
            time.sleep(0.5)
        members: list[bytes] = store.zrange(customers_key("default"), 0, -1)  # type: ignore[assignment]
        ids = [member.decode() for member in members]
        key = create_key_sync(settings, tenant="default", scopes="read", name="bench",
                              rate_limit=0)
        asyncio.run(_load(url, key, ids, args.rate, 2.0))  # warm-up, not counted
        before = sum(int(v) for v in store.hvals(METRICS_KEY))
        outcome = asyncio.run(_load(url, key, ids, args.rate, args.duration))
        processed = sum(int(v) for v in store.hvals(METRICS_KEY)) - before
        if not simulator.is_running() and processed == 0:
            print("warning: the simulator was not running during the load", file=sys.stderr)
        report = _report(outcome, rate=args.rate, customers=len(ids), sim_rate=args.sim_rate,
                         processed=processed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
