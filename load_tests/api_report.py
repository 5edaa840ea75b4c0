"""The API benchmark's report: latency of the load (from when each request was due, from when
it was sent, and how late the client was), the same load with the shop paused, the app's
in-process cost, the CPU each process used, and how the machine's cores were shared."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from load_tests.api_load import Outcome
from load_tests.measure import percentile
from load_tests.report import reproduce_line, run_sentence, speed_check_line, table, title


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


def _label(cmdline: str, roles: dict[int, str], pid: int) -> str:
    if pid in roles:
        return roles[pid]
    short = cmdline.replace(sys.executable, "python").replace(str(Path.home()), "~")
    return f"other: `{short[:70]}`"


def machine_table(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                  seconds: float, roles: dict[int, str]) -> list[str]:
    """The CPU each process used between two :func:`load_tests.measure.cpu_by_process`
    readings ``seconds`` apart, busiest first, by role where ``roles`` knows it."""
    used: dict[str, float] = {}
    for pid, (cmdline, cpu) in after.items():
        delta = cpu - before.get(pid, (cmdline, 0.0))[1]
        if delta > 0.01 * seconds:
            name = _label(cmdline, roles, pid)
            used[name] = used.get(name, 0.0) + delta
    busiest = sorted(used.items(), key=lambda item: -item[1])[:12]
    return table(["process", "CPU (% of one core)"],
                 [[name, f"{cpu / seconds * 100:.0f}"] for name, cpu in busiest], align="lr")


def _latency_cells(values: list[float]) -> list[str]:
    """p50, p90, p99 and max of ``values``: a table row's last four cells."""
    return [f"{percentile(values, q):.2f}" for q in (50, 90, 99)] + [
        f"{max(values, default=float('nan')):.2f}"]


def _phase_row(label: str, outcome: Outcome) -> list[str]:
    served = len(outcome.latencies_ms) / (outcome.elapsed_s or 1)
    return [label, f"{served:,.0f}", str(outcome.error_count),
            *_latency_cells(outcome.latencies_ms)]


def scheduling_sentence(info: RunInfo) -> str:
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


def _baseline_lines(outcome: Outcome, info: RunInfo, baseline: Outcome | None) -> list[str]:
    if baseline is None:
        return []
    return [f"The same load with the shop paused (the worker idle, {baseline.elapsed_s:.0f} s "
            "just before, latency from when each was due), against the run above:", "",
            *table(["phase", "served/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"],
                   [_phase_row("shop paused, worker idle", baseline),
                    _phase_row(f"worker consuming {info.sim_rate:,.0f} events/s", outcome)],
                   align="lrrrrrr"), ""]


def report(outcome: Outcome, info: RunInfo, baseline: Outcome | None = None) -> str:
    rows = [("all requests (from when each was due)", outcome.latencies_ms),
            ("service time (from when each was sent)", outcome.service_ms),
            ("client lateness (sent after due)", outcome.late_ms)]
    seconds = outcome.elapsed_s or 1
    achieved = len(outcome.latencies_ms) / seconds
    p99 = percentile(outcome.latencies_ms, 99)
    errors = ", ".join(f"{count} {reason}" for reason, count in outcome.errors.items())
    lines = [
        *title("API latency: GET /v1/customers/{id}"),
        f"{run_sentence()}. Open-loop load from "
        f"{outcome.client} at {info.rate:,.0f} requests/s for {outcome.elapsed_s:.1f} s over "
        f"{info.customers:,} customers, while one worker consumed the simulated shop at "
        f"{info.sim_rate:,.0f} events/s ({info.processed:,} events processed during the load)"
        f". The API ran as `crm api` (uvicorn, uvloop, "
        f"httptools, no access log) with {info.api_workers} process"
        f"{'es' if info.api_workers > 1 else ''}; every request carried a key with a rate "
        f"limit, so each was counted in Redis. Everything ({info.broker}, redis-server, "
        "worker, simulator, API and the load client) ran on this one machine over loopback; "
        f"load average {info.load_average:.1f} at the end (other work on the machine counts "
        "too).", "", scheduling_sentence(info), "",
        "Latency of each request is counted from when the schedule said it was due, so a late "
        "client or a slow server cannot hide it (no coordinated omission).", "",
        *table(["measure", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms"],
               [[label, f"{len(values):,}", *_latency_cells(values)] for label, values in rows],
               align="lrrrrr"),
        "", f"Achieved {achieved:,.0f} successful requests/s of {info.rate:,.0f} scheduled; "
        f"{outcome.error_count} errors of {outcome.sent:,}{f' ({errors})' if errors else ''}. "
        f"Goal p99 <= 10 ms: **{'met' if p99 <= 10 else 'missed'}** ({p99:.2f} ms). Mean "
        f"service time {statistics.fmean(outcome.service_ms or [0]):.2f} ms.", "",
        *_baseline_lines(outcome, info, baseline),
        f"In-process cost (the ASGI app called directly, one request at a time, same Redis, "
        f"before the load): {info.in_process[0]:.0f} µs per request, "
        f"{info.in_process[1]:.0f} µs of CPU.", "",
        "CPU used on the machine during the load:", "", *info.machine, "",
        *([speed_check_line(*info.speed_ms), ""] if info.speed_ms else []),
        reproduce_line(f"python -m load_tests.bench_api {info.options}",
                       " (`make bench-api` runs the defaults on the embedded broker)"), ""]
    return "\n".join(lines)
