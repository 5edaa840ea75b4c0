"""The alert benchmark's report: latency per offered rate, CPU shares, where the workers'
batches spent their time, the scheduling, and the plots (against rate, and over time)."""

from __future__ import annotations

from pathlib import Path

from load_tests.alerts_measure import GOAL_P99_MS, SLOW_STEP_S, Point
from load_tests.alerts_traffic import AlertWatch
from load_tests.measure import percentile
from load_tests.report import (
    image,
    pyplot,
    reproduce_line,
    run_sentence,
    save_plot,
    speed_check_line,
    table,
    title,
)
from load_tests.scheduling import BUSY_SLICE_MS

COLUMNS = ["offered ev/s", "sent ev/s", "probes alerted", "p50 ms", "p90 ms", "p99 ms", "max ms",
           "p99 sent→emitted", "p99 emitted→received", "worker CPU (of one core)",
           "recommender CPU", "broker CPU", f"p99 ≤ {GOAL_P99_MS:.0f} ms"]


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):,.1f}" if values else "n/a"


def _share(cpu: float | None) -> str:
    return "n/a" if cpu is None else f"{cpu:.0%}"


def _row(p: Point) -> list[str]:
    return [f"{p.rate:,.0f}", f"{p.achieved:,.0f}", f"{len(p.total_ms):,}/{p.probes:,}",
            _ms(p.total_ms, 50), _ms(p.total_ms, 90), _ms(p.total_ms, 99), _ms(p.total_ms, 100),
            _ms(p.emitted_ms, 99), _ms(p.received_ms, 99), _share(p.worker_cpu),
            _share(p.recommender_cpu), _share(p.broker_cpu), "met" if p.met else "missed"]


def steps_table(point: Point) -> list[str]:
    """Where the workers' batches spent their time at one rate (from their metrics)."""
    if not point.steps:
        return []
    rows = [[step, f"{times.seconds / times.batches * 1000:,.2f}",
             f"{times.slow / times.batches:.1%}"]
            for step, times in point.steps.items() if times.batches]
    return [f"Where the workers' batches spent their time at {point.rate:,.0f} events/s "
            "(`crm_worker_batch_step_seconds`, both workers): a step that waits on Redis, "
            "Kafka or a core shows it here.", "",
            *table(["step", "mean ms per batch",
                    f"batches over {SLOW_STEP_S * 1000:.0f} ms in the step"], rows, align="lrr"),
            ""]


def scheduling_sentence(priority: int, remote: bool) -> str:
    """How this run shared the machine's cores."""
    if not priority:
        return "Default scheduling for every process."
    if remote:
        return (f"This benchmark's sender and alert consumer ran at real-time round-robin "
                f"priority {priority} (`chrt --rr {priority}`); the stack kept its own.")
    return (f"The stack (broker, redis-server, workers) and this benchmark's sender and alert "
            f"consumer ran at real-time round-robin priority {priority} (`chrt --rr "
            f"{priority}`); the workers' recommender processes and checkpoint children drop "
            "to the default policy at nice 10, as they do under any real-time worker. So the "
            "other tenants of this shared two-core machine wait for the stack, as they would "
            "on machines of its own, instead of the stack waiting for them.")


def busy_host_sentence(share: float, priority: int) -> str:
    """What the emulated busy host took, if anything."""
    if not share:
        return ""
    return (f" A busier host was emulated for the measured rates: on each core a spinner at "
            f"real-time priority {priority}, above the stack's, took {share:.0%} of the core "
            f"in {BUSY_SLICE_MS} ms slices (`stress-ng --cpu-load`), so the stack had about "
            f"{1 - share:.0%} of the CPU it has in a quiet hour.")


def _priming_sentence(prime: tuple[float, float] | None) -> str:
    if prime is None:
        return ""
    return (f" Before the first rate, {prime[0]:g} s of unmeasured traffic at {prime[1]:,.0f} "
            "events/s went through the whole pipeline and were drained: a freshly started JVM "
            "broker compiles its hot paths during its first minute of traffic (Apache Kafka's "
            "compiler threads took 0.4-0.8 of a core here), which a broker in service has "
            "long done.")


def report(points: list[Point], watch: AlertWatch, *, workers: int, remote: bool,
           broker: str, probe_every: int, plot: Path | None, timeline: Path | None = None,
           speed_ms: tuple[float, float] | None = None,
           prime: tuple[float, float] | None = None, priority: int = 0,
           busy: tuple[float, int] = (0.0, 0), reproduce: str = "") -> str:
    kafka = "Apache Kafka (one KRaft node)" if broker == "apache" else "the embedded broker"
    where = ("against the configured cluster and worker(s)" if remote else
             f"with {kafka}, a redis-server, {workers} worker process"
             f"{'es' if workers > 1 else ''} and this client on one machine")
    lines = [
        *title("Alert latency: triggering event → alert on crm.alerts"),
        f"{run_sentence()}, {where}. Per offered rate: a warm-up, then "
        "open-loop simulated shop traffic with one probe (a ticket resolved with CSAT 1 by a "
        f"fresh customer, which must raise `negative_ticket`) per {probe_every} "
        "events; latency is from the probe's send to its alert arriving here, split at the "
        "alert's `emitted_at` (worker clock = this clock)." + _priming_sentence(prime) + " "
        + scheduling_sentence(priority, remote) + busy_host_sentence(*busy), "",
        *table(COLUMNS, [_row(p) for p in points], align="r" * 12 + "l"), "",
        "Alerts seen by kind (all rates): "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(watch.kinds.items())) or 'none'}.", "",
    ]
    for point in points:
        lines += steps_table(point)
    if speed_ms is not None:
        lines += [speed_check_line(*speed_ms), ""]
    if plot is not None:
        lines += [image("latency against offered rate", plot), ""]
    if timeline is not None:
        lines += ["Every probe of each rate, by when it was sent: a tail made of episodes (a "
                  "stall, a checkpoint, a busy neighbour) looks different from a slow pipeline.",
                  "", image("latency of each probe over time", timeline), ""]
    lines += [reproduce_line(reproduce or "python -m load_tests.bench_alerts"), ""]
    return "\n".join(lines)


def plot_points(points: list[Point], path: Path) -> None:
    """p50 and p99 against the offered rate, with the goal."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    rates = [p.rate for p in points]
    for q, style in ((50, "o-"), (99, "s-")):
        axes.plot(rates, [percentile(p.total_ms, q) for p in points], style, label=f"p{q}")
    axes.axhline(GOAL_P99_MS, color="grey", linestyle="--", label="goal p99")
    axes.set_yscale("log")
    axes.set_xlabel("offered events/s")
    axes.set_ylabel("probe sent → alert received (ms)")
    axes.set_title("Alert latency against load")
    axes.legend()
    save_plot(figure, path)


def plot_timeline(points: list[Point], path: Path) -> None:
    """Each probe's latency against when it was sent, one panel per rate."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, panels = plt.subplots(len(points), 1, figsize=(7, 1.6 * len(points) + 0.6),
                                  sharex=True, squeeze=False)
    for point, axes in zip(points, panels[:, 0], strict=True):
        axes.scatter(point.sent_s, point.total_ms, s=4)
        axes.axhline(GOAL_P99_MS, color="grey", linestyle="--", linewidth=0.8)
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.set_ylabel(f"{point.rate:,.0f}/s\nms", fontsize=8)
    panels[-1, 0].set_xlabel("seconds into the measurement (probe sent)")
    panels[0, 0].set_title("Latency of each probe over time (dashed: the p99 goal)")
    save_plot(figure, path)
