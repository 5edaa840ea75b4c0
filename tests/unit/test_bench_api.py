"""The API benchmark's report says how the CPU was shared and whether the worker kept up."""

from __future__ import annotations

from load_tests.api_report import RunInfo, scheduling_sentence
from load_tests.scheduling import realtime_argv, realtime_permitted


def run_info(*, processed: int, priority: int, sim_rate: float = 500.0,
             load_seconds: float = 20.0) -> RunInfo:
    return RunInfo(rate=1000.0, customers=500, sim_rate=sim_rate, processed=processed,
                   load_seconds=load_seconds, api_workers=2, in_process=(500.0, 450.0),
                   machine=[], load_average=1.0, priority=priority, backlog=(3_240, 2.5))


def test_a_prioritised_read_path_is_named_with_the_command_that_reproduces_it() -> None:
    sentence = scheduling_sentence(run_info(processed=10_000, priority=10))

    assert "real-time round-robin priority 10 (`chrt --rr 10`)" in sentence
    assert "handled 500 of the shop's 500 events/s during the load (100%), so it kept up. " in (
        sentence)


def test_a_worker_that_fell_behind_is_reported_with_its_share() -> None:
    sentence = scheduling_sentence(run_info(processed=6_760, priority=10))

    assert "handled 338 of the shop's 500 events/s during the load (68%)" in sentence
    assert "kept up" not in sentence
    assert "waited in Kafka" in sentence
    assert sentence.endswith("the worker handled 3,240 more events and was idle 2.5 s later.")


def test_default_scheduling_is_said_so() -> None:
    sentence = scheduling_sentence(run_info(processed=9_600, priority=0))

    assert sentence.startswith("Default scheduling for every process.")
    assert "kept up" in sentence  # 96% counts as keeping up with a shop that paces itself


def test_priority_zero_starts_commands_unchanged_and_is_always_permitted() -> None:
    assert realtime_argv(0) == []
    assert realtime_argv(10) == ["chrt", "--rr", "10"]
    assert realtime_permitted(0)


def test_a_redis_the_benchmark_did_not_start_is_not_claimed_as_prioritised() -> None:
    info = run_info(processed=10_000, priority=10)
    info.redis_prioritised = False

    sentence = scheduling_sentence(info)

    assert "(the API's processes and the load client; the Redis at CRM_REDIS_URL" in sentence
    assert "redis-server" not in sentence
