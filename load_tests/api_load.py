"""The API benchmark's load: ``GET /v1/customers/{id}`` on an open schedule, from vegeta (Go,
constant rate, its own process) or, as the fallback, an aiohttp client in this process; and
what the benchmark reads of the worker (the customers it knows, the events it has handled).

Request *i* is due at ``start + i / rate`` whether or not earlier ones returned, and its
latency is counted from when it was due (no coordinated omission), so a slow server or a late
client cannot hide latency.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import orjson
import redis

from feature_store.keys import customers_key
from load_tests.measure import metric_total, percentile
from load_tests.scheduling import realtime_argv
from stream.processes import ManagedProcess
from stream.settings import Settings

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


def run_python(url: str, key: str, ids: list[str], rate: float, duration_s: float,
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


def run_vegeta(vegeta: Path, url: str, key: str, ids: list[str], rate: float,
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


# -- what the worker did --------------------------------------------------------------------

def known_customers(settings: Settings, worker: ManagedProcess, *, at_least: int,
                    timeout_s: float = 120.0) -> list[str]:
    """The identified customers in the customer index once ``worker`` has put ``at_least``
    customers there.

    Read from Redis by the documented key layout (:mod:`feature_store.keys`): the API serves
    single customers and top-100 rankings, never the whole index a load needs to spread over.
    """
    store = redis.Redis.from_url(settings.redis_url)
    index = customers_key("default")
    deadline = time.monotonic() + timeout_s
    while store.zcount(index, "-inf", "+inf") < at_least:
        if time.monotonic() > deadline or not worker.is_running():
            raise SystemExit(f"the worker did not fill Redis:\n{worker.log_tail()}")
        time.sleep(0.5)
    members: list[bytes] = store.zrange(index, 0, -1)  # type: ignore[assignment]
    store.close()
    # Known customers only: an anonymous visitor's profile goes once they are identified.
    return [member.decode() for member in members if not member.startswith(b"anon:")]


def processed(url: str) -> int:
    """Input messages the workers have handled so far, every outcome, as the API's
    ``/metrics`` serves them (``crm_events_processed_total``)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return int(metric_total(text, "crm_events_processed_total"))


def wait_until_idle(url: str, timeout_s: float = 30.0, quiet_s: float = 1.0) -> float:
    """Wait until the workers' processed count has not moved for ``quiet_s`` (the backlog is
    drained); the ``time.monotonic()`` when it last moved, to a quarter of a second."""
    deadline, last, moved = time.monotonic() + timeout_s, processed(url), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - moved < quiet_s:
        time.sleep(0.25)
        count = processed(url)
        if count != last:
            last, moved = count, time.monotonic()
    return moved
