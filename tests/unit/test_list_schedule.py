"""Recommendation lists: at most one per refresh interval per customer, and no interaction
lost to the interval."""

from __future__ import annotations

from agents.list_schedule import ListSchedule


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _viewed(customer: str, *recent: str) -> tuple[tuple[str, str], tuple[set[str], list[str]],
                                                   bool]:
    return ("t", customer), (set(), list(recent)), True


def test_a_new_customer_is_listed_at_once_and_again_only_after_the_interval() -> None:
    clock = Clock()
    schedule = ListSchedule(refresh_s=5.0, clock=clock)
    schedule.note([_viewed("c1", "p1")])
    assert schedule.take() == {("t", "c1"): (set(), ["p1"])}
    clock.now = 2.0
    schedule.note([_viewed("c1", "p2", "p1")])
    assert schedule.take() == {}, "within the interval: no second list yet"


def test_an_interaction_within_the_interval_gets_its_list_once_the_interval_has_passed(
) -> None:
    """Whoever views three products in a few seconds is shown a list made after the last,
    not the first (without any later event of theirs to carry it)."""
    clock = Clock()
    schedule = ListSchedule(refresh_s=5.0, clock=clock)
    schedule.note([_viewed("c1", "p1")])
    schedule.take()
    clock.now = 1.0
    schedule.note([_viewed("c1", "p2", "p1")])
    clock.now = 2.0
    schedule.note([_viewed("c1", "p3", "p2", "p1")])
    clock.now = 4.9
    assert schedule.take() == {}
    clock.now = 5.0
    assert schedule.take() == {("t", "c1"): (set(), ["p3", "p2", "p1"])}
    clock.now = 20.0
    assert schedule.take() == {}, "listed once"


def test_a_customer_scored_without_interacting_is_not_listed_again() -> None:
    clock = Clock()
    schedule = ListSchedule(refresh_s=0.0, clock=clock)
    schedule.note([_viewed("c1", "p1")])
    schedule.take()
    clock.now = 10.0
    schedule.note([(("t", "c1"), (set(), ["p1"]), False)])  # e.g. a page view or a ticket
    assert schedule.take() == {}


def test_lists_are_taken_first_due_first_and_a_customer_due_again_keeps_their_place(
) -> None:
    schedule = ListSchedule(refresh_s=0.0, clock=Clock())
    schedule.note([_viewed("c1", "p1"), _viewed("c2", "p1"), _viewed("c3", "p1")])
    schedule.note([_viewed("c1", "p2")])
    assert len(schedule) == 3
    assert schedule.take(2) == {("t", "c1"): (set(), ["p2"]), ("t", "c2"): (set(), ["p1"])}
    assert list(schedule.take()) == [("t", "c3")]


def test_an_erased_customer_is_due_nothing_now_or_later() -> None:
    clock = Clock()
    schedule = ListSchedule(refresh_s=5.0, clock=clock)
    schedule.note([_viewed("c1", "p1"), _viewed("c2", "p1")])
    schedule.take()
    clock.now = 1.0
    schedule.note([_viewed("c1", "p2")])
    schedule.note([_viewed("c3", "p1")])
    schedule.forget(("t", "c1"))
    schedule.forget(("t", "c3"))
    clock.now = 10.0
    assert schedule.take() == {}
