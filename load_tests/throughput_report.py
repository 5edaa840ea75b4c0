"""The throughput benchmark's data and report: a backlog, a worker's drain of it, the
plot and ``THROUGHPUT.md`` (see :mod:`load_tests.bench_throughput`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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


def write(args: argparse.Namespace, *, backlog: Backlog, drains: dict[str, Drain],
          ceiling: float, stages: dict[str, float] | None,
          profile_rows: list[tuple[str, float, float]], plot_path: Path,
          speed: tuple[float, float]) -> None:
    """Write the report to ``args.output``."""
    worker, count = drains["worker"], len(backlog.events)
    speed_before, speed_after = speed

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
                  "features only and the full batch in turn three times, the median of each; "
                  "the steps from the median full batch's own timers):",
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
