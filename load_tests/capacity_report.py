"""The capacity benchmark's per-event figures and ``CAPACITY-MEASURED.md`` (see
:mod:`load_tests.bench_capacity`)."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_tests.report import reproduce_line, run_sentence, speed_check_line, table, title
from load_tests.report import write_report as write_markdown

RESULTS = Path(__file__).resolve().parent / "results" / "CAPACITY-MEASURED.md"
SECONDS_PER_DAY = 86_400


@dataclass
class Measured:
    """Per-event costs of one run (events: input messages the worker processed)."""

    topology: str
    events: int
    wall_s: float
    worker_cpu_s: float
    recommender_cpu_s: float
    broker_cpu_s: float
    redis_cpu_s: dict[str, float]
    redis_calls: dict[str, Counter[str]]
    redis_net_in: dict[str, int]
    redis_net_out: dict[str, int]
    redis_role: dict[str, str]
    #: Bytes the masters' data grew by from before the worker started to the end.
    redis_memory: int
    profiles: int
    #: The master holding the hash slot of the tenant's own keys (``{default}``).
    tenant_node: str
    kafka_bytes_per_event: float
    replication_factor: int
    #: Mean size of an event's JSON as the shop sends it.
    payload_bytes: float
    #: Redis memory per remembered event id in a customer's dedupe set of 128 (Redis keeps
    #: it compact, a listpack) and of 10,000 ids (a skiplist), from sets of real ids.
    bytes_per_event_id: tuple[float, float]
    #: The brokers' CPU seconds per second while idle (no traffic), before the worker ran.
    broker_idle_cpu: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def worker_cpu_us(self) -> float:
        return self.worker_cpu_s / self.events * 1e6

    @property
    def masters(self) -> list[str]:
        return [node for node, role in self.redis_role.items() if role == "master"]

    def master_calls(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for node in self.masters:
            total += self.redis_calls[node]
        return total

    def per_event(self, values: dict[str, Any], nodes: list[str]) -> float:
        return sum(values[node] for node in nodes) / self.events


def measured_rows(runs: list[Measured]) -> list[list[str]]:
    rows = []
    for run in runs:
        masters = run.masters
        calls = run.master_calls()
        replicas = [n for n in run.redis_role if n not in masters]
        rows += [
            [run.topology, "events processed in the window", f"{run.events:,}"],
            [run.topology, "worker throughput, this shared 2-core machine",
             f"{run.events_per_s:,.0f} events/s"],
            [run.topology, "worker CPU per event (its event loop)", f"{run.worker_cpu_us:.0f} µs"],
            [run.topology, "recommender process CPU per event",
             f"{run.recommender_cpu_s / run.events * 1e6:.0f} µs"],
            [run.topology, "Kafka brokers' CPU per event (all brokers; beyond their idle "
             f"{run.broker_idle_cpu:.2f} of a core)",
             f"{run.broker_cpu_s / run.events * 1e6:.0f} µs "
             f"({(run.broker_cpu_s - run.broker_idle_cpu * run.wall_s) / run.events * 1e6:.0f}"
             " µs)"],
            [run.topology, "Redis CPU per event, masters",
             f"{run.per_event(run.redis_cpu_s, masters) * 1e6:.1f} µs"],
            [run.topology, "Redis CPU per event, replicas",
             f"{run.per_event(run.redis_cpu_s, replicas) * 1e6:.1f} µs" if replicas else "none"],
            [run.topology, "Redis commands per event (masters)",
             f"{sum(calls.values()) / run.events:.2f}"],
            [run.topology, "Redis bytes in / out per event (masters, client traffic and "
             "replication)", f"{run.per_event(run.redis_net_in, masters):,.0f} / "
             f"{run.per_event(run.redis_net_out, masters):,.0f}"],
            [run.topology, "Redis memory the run added, per profile (masters)",
             f"{run.redis_memory / run.profiles:,.0f} B ({run.profiles:,} profiles, "
             f"{run.events / run.profiles:.0f} events each)"],
            [run.topology, "event JSON as sent, mean", f"{run.payload_bytes:,.0f} B"],
            [run.topology, "Kafka bytes per input event on disk, one replica (lz4, in the "
             "large batches of a backlog)", f"{run.kafka_bytes_per_event:,.0f} B"],
            [run.topology, "Redis memory per remembered event id, dedupe set of 128 / 10,000",
             f"{run.bytes_per_event_id[0]:,.0f} B / {run.bytes_per_event_id[1]:,.0f} B"],
        ]
    return rows


def command_rows(runs: list[Measured], top: int = 12) -> list[list[str]]:
    rows = []
    for run in runs:
        calls = run.master_calls()
        for name, count in calls.most_common(top):
            rows.append([run.topology, name, f"{count / run.events:.3f}"])
    return rows


def node_rows(run: Measured) -> list[list[str]]:
    total = sum(sum(run.redis_calls[n].values()) for n in run.masters) or 1
    return [[node + (" (the tenant's keys)" if node == run.tenant_node else ""),
             f"{sum(run.redis_calls[node].values()) / run.events:.2f}",
             f"{sum(run.redis_calls[node].values()) / total:.0%}",
             f"{run.redis_cpu_s[node] / run.events * 1e6:.1f} µs"]
            for node in run.masters]


def write(runs: list[Measured], args: argparse.Namespace, speed: tuple[float, float]) -> None:
    lines = [*title("Capacity: what one event costs (measured)"),
             run_sentence() + f": {args.events:,} simulated events ({args.customers:,} "
             f"customers), {args.partitions} partitions, one `crm worker` going as fast as it "
             "can through events produced before it started. Figures are deltas between the "
             "moments it had processed 2% and 98% of them.", "",
             *table(["topology", "measure", "value"], measured_rows(runs), align="llr"), "",
             "Redis commands per event by command (masters):", "",
             *table(["topology", "command", "calls per event"], command_rows(runs),
                    align="llr"), ""]
    for run in runs:
        if len(run.masters) > 1:
            lines += [f"How the {run.topology} run's commands spread over the masters (one "
                      "tenant):", "",
                      *table(["master", "commands per event", "share", "CPU per event"],
                             node_rows(run), align="lrrr"), ""]
    lines += [speed_check_line(*speed), "",
              reproduce_line("python -m load_tests.bench_capacity "
                             f"--events {args.events} --customers {args.customers}")]
    write_markdown(RESULTS, "\n".join(lines) + "\n")
