"""The recommender's own process writes lists to a real redis-server, forgets erased
customers, survives restarts through its checkpoints, sheds work when far behind, and does
not outlive its worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from prometheus_client import REGISTRY

from agents.recommending import (
    Interaction,
    RecommendationWork,
    RecommenderProcess,
    restore_recommender,
)
from feature_store.keys import CustomerKeys
from stream.settings import Settings

DEADLINE_S = 60.0  # a spawned child imports River and friends first


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    redis.Redis.from_url(redis_url).flushdb()
    return Settings(redis_url=redis_url, checkpoint_dir=tmp_path / "checkpoints",
                    app_id=f"crm-reco-{uuid.uuid4().hex[:8]}", checkpoint_interval_s=3600)


@pytest.fixture
def start(settings: Settings) -> Iterator[Callable[..., RecommenderProcess]]:
    started: list[RecommenderProcess] = []

    def start_process(checkpoint_phase_s: float | None = None,
                      **overrides: object) -> RecommenderProcess:
        process = RecommenderProcess(settings.model_copy(update=overrides), "w1",
                                     checkpoint_phase_s=checkpoint_phase_s)
        started.append(process)
        return process

    yield start_process
    for process in started:
        process.stop(timeout_s=10)


def views(customer: str, products: list[str]) -> list[Interaction]:
    return [Interaction("default", customer, (product,), "view", 1_000 * n, products[:n])
            for n, product in enumerate(products)]


def due(*customers: str) -> dict[tuple[str, str], tuple[set[str], list[str]]]:
    return {("default", customer): (set(), []) for customer in customers}


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def listed(settings: Settings, customer: str) -> list[dict[str, object]] | None:
    raw = redis.Redis.from_url(settings.redis_url).get(CustomerKeys("default", customer).recos)
    return None if raw is None else orjson.loads(raw)


def caught_up(process: RecommenderProcess) -> bool:
    report = process.report()
    return report is not None and report.processed == process.submitted


def checkpoints(settings: Settings) -> list[Path]:
    return sorted((settings.checkpoint_dir / settings.app_id).glob("*/recommender-*.ckpt"))


def test_lists_are_written_and_a_stopped_process_resumes_from_its_checkpoint(
        settings: Settings, start: Callable[..., RecommenderProcess]) -> None:
    first = start()
    first.submit(RecommendationWork(interactions=views("c1", ["p1", "p2", "p3"]),
                                    due=due("c1")))
    wait_for(lambda: listed(settings, "c1") is not None, "c1's list")
    items = listed(settings, "c1")
    assert items and all({"product_id", "score", "source"} <= set(item) for item in items)
    wait_for(lambda: caught_up(first), "the first report")
    learnt = first.report().example_count  # type: ignore[union-attr]
    assert learnt == 3
    first.stop()
    assert first.process.exitcode == 0
    assert len(checkpoints(settings)) == 1, "stopping checkpoints the recommender"

    second = start()
    wait_for(lambda: second.report() is not None, "the restarted process's report")
    assert second.report().example_count == learnt  # type: ignore[union-attr]


def test_an_erased_customer_loses_their_list_and_is_forgotten(
        settings: Settings, start: Callable[..., RecommenderProcess]) -> None:
    process = start()
    process.submit(RecommendationWork(
        interactions=views("c1", ["p1", "p2"]) + views("c2", ["p2", "p3"]), due=due("c1", "c2")))
    wait_for(lambda: listed(settings, "c2") is not None, "the lists")
    process.submit(RecommendationWork(erased=[("default", "c1")]))
    wait_for(lambda: listed(settings, "c1") is None, "c1's list to go")
    assert listed(settings, "c2") is not None
    process.stop()
    restored = restore_recommender(settings, "w1")
    assert "c1" not in restored.mf.u_biases and "c2" in restored.mf.u_biases


def test_work_is_shed_and_counted_while_the_process_is_behind(
        settings: Settings, start: Callable[..., RecommenderProcess]) -> None:
    def shed() -> float:
        return REGISTRY.get_sample_value("crm_worker_recommender_shed_total") or 0.0

    process = start(recommender_max_backlog=0)
    before = shed()
    process.submit(RecommendationWork(interactions=views("c1", ["p1", "p2"]), due=due("c1")))
    # Not reported done yet: the next interactions and lists are shed, the erasure is not.
    process.submit(RecommendationWork(interactions=views("c2", ["p3"]), due=due("c2"),
                                      erased=[("default", "c3")]))
    assert shed() - before == 2
    assert process.submitted == 3
    wait_for(lambda: caught_up(process), "the child to catch up")
    assert listed(settings, "c1") is not None and listed(settings, "c2") is None
    assert process.report().example_count == 2  # type: ignore[union-attr]


def test_sigterm_finishes_the_queued_work_then_checkpoints_and_exits(
        settings: Settings, start: Callable[..., RecommenderProcess]) -> None:
    process = start()
    wait_for(lambda: process.report() is not None, "the process to start")
    process.submit(RecommendationWork(interactions=views("c1", ["p1", "p2", "p3"]),
                                      due=due("c1")))
    os.kill(process.process.pid, signal.SIGTERM)
    process.process.join(DEADLINE_S)
    assert process.process.exitcode == 0
    assert listed(settings, "c1") is not None
    assert restore_recommender(settings, "w1").example_count == 3


def test_the_process_checkpoints_and_exits_when_its_worker_is_killed(
        settings: Settings, tmp_path: Path) -> None:
    worker = textwrap.dedent(f"""
        import sys, time
        from agents.recommending import Interaction, RecommendationWork, RecommenderProcess
        from stream.settings import Settings

        if __name__ == "__main__":
            settings = Settings.model_validate_json({settings.model_dump_json()!r})
            process = RecommenderProcess(settings, "w1")
            process.submit(RecommendationWork(
                interactions=[Interaction("default", "c1", ("p1",), "view", 0, [])]))
            while process.report() is None:
                time.sleep(0.05)
            print(process.process.pid, flush=True)
            time.sleep(600)
    """)
    script = tmp_path / "worker.py"
    script.write_text(worker)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              cwd=Path(__file__).parents[2], text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not _alive(child), "the orphaned child to exit")
    finally:
        parent.kill()
    assert checkpoints(settings), "an orphaned child checkpoints before it exits"
    assert restore_recommender(settings, "w1").example_count == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by init yet) is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_the_first_checkpoint_comes_at_the_phase_the_worker_chose(
        settings: Settings, start: Callable[..., RecommenderProcess]) -> None:
    start(checkpoint_phase_s=1.0)  # the interval is an hour
    folder = settings.checkpoint_dir / settings.app_id / "w1"

    wait_for(lambda: list(folder.glob("recommender-*.ckpt")), "the checkpoint at the phase")
    time.sleep(2.0)

    assert len(list(folder.glob("recommender-*.ckpt"))) == 1  # the next one is an hour away
