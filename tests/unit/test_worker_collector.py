"""The worker freezes long-lived objects before each checkpoint fork and thaws them in turn,
and makes no collections while the checkpoint child lives."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agents.collector import (
    FULL_PASS_AFTER,
    YOUNG_THRESHOLD,
    CollectorSchedule,
    configure_worker_process,
    freeze_loaded_models,
)


class Node:
    """An object that can sit in a reference cycle."""

    other: Node | None = None


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def garbage_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_before_fork_moves_what_is_alive_out_of_reach_of_collections() -> None:
    """Verify that objects alive at the freeze are skipped by later collections."""
    cycle = garbage_cycle()  # unreachable already, but not yet collected
    CollectorSchedule(thaw_every=5).before_fork()

    gc.collect()

    assert gc.get_freeze_count() > 0
    assert cycle() is not None  # frozen: left alone


def test_every_nth_freeze_thaws_and_reclaims_frozen_garbage() -> None:
    """Verify that a cycle frozen before it died is reclaimed at the next thaw, not leaked."""
    schedule = CollectorSchedule(thaw_every=3)
    cycle = garbage_cycle()
    schedule.before_fork()
    schedule.before_fork()
    gc.collect()
    assert cycle() is not None

    schedule.before_fork()  # the third: thaw, collect, freeze again

    assert cycle() is None


def test_no_collections_while_paused_and_the_collector_back_after() -> None:
    """Verify that a young cycle made while the child lives waits for the first pass after."""
    with CollectorSchedule().paused():
        cycle = garbage_cycle()
        alive = [Node() for _ in range(10_000)]  # allocations that would trigger young passes
        assert cycle() is not None
        assert not gc.isenabled()
    assert gc.isenabled()
    del alive

    gc.collect()

    assert cycle() is None


def test_pausing_keeps_a_collector_someone_disabled_disabled() -> None:
    gc.disable()
    try:
        with CollectorSchedule().paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_process_with_its_models_loaded_freezes_them_and_collects_young_objects_rarely(
) -> None:
    """Verify that what a process holds once its models are loaded is frozen, that a batch's
    objects can die young (the threshold is far above Python's 700), and that cycles made
    afterwards are still collected."""
    thresholds = gc.get_threshold()
    try:
        models = [Node() for _ in range(1000)]
        configure_worker_process()
        freeze_loaded_models()
        assert gc.get_freeze_count() >= len(models)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, thresholds[1], FULL_PASS_AFTER)
        assert YOUNG_THRESHOLD > 700
        cycle = garbage_cycle()
        gc.collect()
        assert cycle() is None
    finally:
        gc.set_threshold(*thresholds)
