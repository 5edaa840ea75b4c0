"""The alert benchmark's report: the goal is met only with every probe alerted in time, and
the report says how the run was primed, how the CPU went and was shared, and how to run it
again."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from load_tests.alerts_measure import Point, measure, step_times_from
from load_tests.alerts_report import report
from load_tests.alerts_traffic import AlertWatch
from load_tests.scheduling import busy_host_argv, busy_host_problem
from stream.settings import Settings


def point(*, latencies_ms: list[float], probes: int) -> Point:
    return Point(rate=2000.0, achieved=1998.0, total_ms=latencies_ms, emitted_ms=latencies_ms,
                 received_ms=[1.0] * len(latencies_ms), probes=probes, worker_cpu=1.04,
                 recommender_cpu=0.31, broker_cpu=0.27)


def test_the_goal_is_met_only_when_every_probe_alerted_within_the_p99_goal() -> None:
    fast = [20.0] * 99 + [90.0]
    assert point(latencies_ms=fast, probes=100).met
    assert not point(latencies_ms=fast[:-1], probes=100).met  # one probe never alerted
    assert not point(latencies_ms=[20.0] * 98 + [150.0] * 2, probes=100).met


def test_the_report_gives_the_cpu_shares_the_priming_and_the_command() -> None:
    watch = AlertWatch(Settings(kafka_bootstrap="127.0.0.1:1"))
    text = report([point(latencies_ms=[20.0] * 100, probes=100)], watch, workers=2,
                  remote=False, broker="apache", probe_every=100, plot=None,
                  prime=(60.0, 2000.0),
                  reproduce="python -m load_tests.bench_alerts --broker apache --workers 2")

    assert "| 104% | 31% | 27% | met |" in text
    assert "60 s of unmeasured traffic at 2,000 events/s" in text
    assert "Reproduce: `python -m load_tests.bench_alerts --broker apache --workers 2`." in text


def test_each_alerted_probe_keeps_when_it_was_sent_for_the_timeline() -> None:
    watch = AlertWatch(Settings(kafka_bootstrap="127.0.0.1:1"))
    watch.emitted_at.update({"a": 100.04, "c": 102.4})
    watch.received_at.update({"a": 100.05, "c": 102.5})
    probes = {"a": 100.0, "b": 101.0, "c": 102.0}  # b never alerted

    point = measure(probes, watch, rate=2000.0, sent=6000, elapsed_s=3.0, worker_cpu=None)

    assert point.sent_s == [0.0, 2.0]
    assert point.total_ms == pytest.approx([50.0, 500.0])
    assert point.missing == 1
    text = report([point], watch, workers=1, remote=False, broker="apache", probe_every=100,
                  plot=None, timeline=Path("ALERTS-timeline.png"))
    assert "![latency of each probe over time](ALERTS-timeline.png)" in text


def test_the_report_says_which_processes_had_real_time_priority() -> None:
    watch = AlertWatch(Settings(kafka_bootstrap="127.0.0.1:1"))
    points = [point(latencies_ms=[20.0] * 100, probes=100)]

    local = report(points, watch, workers=2, remote=False, broker="apache", probe_every=100,
                   plot=None, priority=10)
    default = report(points, watch, workers=2, remote=False, broker="apache", probe_every=100,
                     plot=None, priority=0)
    remote = report(points, watch, workers=2, remote=True, broker="apache", probe_every=100,
                    plot=None, priority=10)

    assert "The stack (broker, redis-server, workers) and this benchmark's sender and alert " \
        "consumer ran at real-time round-robin priority 10 (`chrt --rr 10`)" in local
    assert "recommender processes and checkpoint children drop to the default policy" in local
    assert "Default scheduling for every process." in default
    assert "chrt" not in default
    assert "sender and alert consumer ran at real-time round-robin priority 10" in remote
    assert "the stack kept its own" in remote


def test_the_report_says_how_busy_an_emulated_host_was() -> None:
    watch = AlertWatch(Settings(kafka_bootstrap="127.0.0.1:1"))
    quiet, busy = (report([point(latencies_ms=[20.0] * 100, probes=100)], watch, workers=2,
                          remote=False, broker="apache", probe_every=100, plot=None,
                          priority=10, busy=(share, 20)) for share in (0.0, 0.3))

    assert "busier host" not in quiet
    assert "a spinner at real-time priority 20, above the stack's, took 30% of the core" in busy
    assert "about 70% of the CPU it has in a quiet hour" in busy


@pytest.mark.parametrize("share", [1.0, 1.5, -0.2])
def test_a_busy_host_takes_part_of_each_core_never_all(share: float) -> None:
    problem = busy_host_problem(share, priority=20)

    assert problem is not None and "above 0 and below 1" in problem


def test_a_busy_host_spins_on_one_core_per_spinner_above_the_stack() -> None:
    argv = busy_host_argv(0.25, cpu=1, priority=20)

    assert argv[:7] == ["stress-ng", "--cpu", "1", "--taskset", "1", "--cpu-load", "25"]
    assert argv[argv.index("--sched-prio") + 1] == "20"


def test_the_report_shows_where_the_workers_batches_spent_their_time() -> None:
    registry = CollectorRegistry()
    steps = Histogram("crm_worker_batch_step_seconds", "per step", ["step"], registry=registry,
                      buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1))
    for seconds in (0.003, 0.005, 0.009, 0.063):  # one slow batch of four
        steps.labels(step="publish").observe(seconds)
    steps.labels(step="apply").observe(0.004)

    times = step_times_from(generate_latest(registry).decode())

    assert (times["publish"].batches, times["publish"].slow) == (4, 1)
    assert times["publish"].seconds == pytest.approx(0.080)
    assert times["models"].batches == 0
    measured = point(latencies_ms=[20.0] * 100, probes=100)
    measured.steps = times
    text = report([measured], AlertWatch(Settings(kafka_bootstrap="127.0.0.1:1")), workers=2,
                  remote=False, broker="apache", probe_every=100, plot=None)
    assert "| publish | 20.00 | 25.0% |" in text
    assert "| apply | 4.00 | 0.0% |" in text
    assert "| models |" not in text, "a step no batch reached has no row"
