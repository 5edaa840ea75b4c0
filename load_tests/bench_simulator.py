"""How fast the simulated shop is: generation alone, with validation, and end to end.

Run ``python -m load_tests.bench_simulator`` (``--help`` for options). Without
``--bootstrap`` it starts the embedded tansu broker on a free port, creates the topics, and
stops the broker afterwards. Columns:

- *generation*: ``ShopSimulator.events()`` alone;
- *+ validation*: plus ``validate_event`` and ``orjson.dumps`` per event (no Kafka);
- *end to end*: ``run_simulation`` producing to the broker, flush included.

Each figure is the best of ``--repeat`` runs (the machine may be shared); CPU seconds per
event are shown too, since wall time suffers most from a busy neighbour.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson

from load_tests.commands import create_topics
from schemas.events import validate_event
from simulator import ShopSimulator, run_simulation
from stream.settings import Settings


def _timed(function: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Best (events/s by wall clock, CPU µs per event) over ``repeat`` runs."""
    best_rate, best_cpu = 0.0, float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        count = function()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best_rate = max(best_rate, count / wall)
        best_cpu = min(best_cpu, cpu / count * 1e6)
    return best_rate, best_cpu


def generation_only(sim: ShopSimulator, events: int) -> int:
    count = 0
    for _ in islice(sim.events(), events):
        count += 1
    return count


def with_validation(sim: ShopSimulator, events: int) -> int:
    now = datetime.now(UTC)
    count = 0
    for event in islice(sim.events(), events):
        validate_event(event, now=now)
        orjson.dumps(event)
        count += 1
    return count


def end_to_end(
    settings: Settings, customers: int, seed: int, events: int, repeat: int
) -> tuple[float, float]:
    """Best events/s as ``run_simulation`` reports it (what ``crm simulate`` prints: from the
    first event to the end of the flush), and CPU µs per event of the whole call."""
    best_rate, best_cpu = 0.0, float("inf")
    for _ in range(repeat):
        cpu = time.process_time()
        report = run_simulation(settings=settings, customers=customers, seed=seed,
                                max_events=events, progress=False)
        cpu = time.process_time() - cpu
        assert report.invalid == 0, report
        best_rate = max(best_rate, report.events_per_s)
        best_cpu = min(best_cpu, cpu / report.events_sent * 1e6)
    return best_rate, best_cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bootstrap", help="An existing broker (host:port); else embedded.")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)

    sim = ShopSimulator(customers=args.customers, seed=args.seed)
    gen_rate, gen_cpu = _timed(lambda: generation_only(sim, args.events), args.repeat)
    val_rate, val_cpu = _timed(lambda: with_validation(sim, args.events), args.repeat)

    broker = None
    bootstrap = args.bootstrap
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as work_dir:
        if bootstrap is None:
            from stream.devstack import EmbeddedBroker

            broker = EmbeddedBroker(work_dir=Path(work_dir))
            bootstrap = broker.start()
        try:
            settings = Settings(kafka_bootstrap=bootstrap, partitions=args.partitions)
            create_topics(settings)
            e2e_rate, e2e_cpu = end_to_end(
                settings, args.customers, args.seed, args.events, args.repeat
            )
        finally:
            if broker is not None:
                broker.stop()

    where = "embedded tansu" if broker is not None else bootstrap
    print(f"simulator: {args.customers:,} customers, {args.events:,} events, "
          f"best of {args.repeat}, broker: {where}")
    print("| stage | events/s | CPU µs/event (this process, all threads) |")
    print("|---|---:|---:|")
    print(f"| generation only | {gen_rate:,.0f} | {gen_cpu:.1f} |")
    print(f"| + validation + JSON | {val_rate:,.0f} | {val_cpu:.1f} |")
    print(f"| end to end (produce + flush) | {e2e_rate:,.0f} | {e2e_cpu:.1f} |")
    print(f"end to end / generation only: {e2e_rate / gen_rate:.2f} by wall clock, "
          f"{gen_cpu / e2e_cpu:.2f} by CPU per event")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(wall-clock figures suffer when it exceeds the CPU count)")


if __name__ == "__main__":
    main()
