"""Who is due a fresh recommendation list: at most one per refresh interval each, and none
lost to the interval.

A list is made when a customer interacts with products (or has none yet). Listing is most
of the recommender's cost, so a customer is listed at most once per ``refresh_s``; but an
interaction within the interval is not dropped: the customer waits, with their newest
inputs, and is listed once the interval has passed. Otherwise whoever views three products
in as many seconds would be shown, until their next visit, a list made after the first (in
a replay of months in minutes, one weeks old in event time: on the seasonal shop of
``crm bench quality`` that alone cost a third of the lift over popularity).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable

from feature_store import CustomerKey

#: A list's inputs: the products the customer bought and their recent ones, newest first.
ListInputs = tuple[set[str], list[str]]


class ListSchedule:
    """Customers due a list, first due first, each with their newest inputs.

    >>> now = [0.0]
    >>> schedule = ListSchedule(refresh_s=5.0, clock=lambda: now[0])
    >>> schedule.note([(("t", "c1"), ({"p1"}, ["p1"]), True)])  # new: due now
    >>> list(schedule.take())
    [('t', 'c1')]
    >>> now[0] = 1.0
    >>> schedule.note([(("t", "c1"), (set(), ["p2", "p1"]), True)])  # within 5 s: waits
    >>> schedule.take()
    {}
    >>> now[0] = 5.0  # the interval has passed
    >>> schedule.take()
    {('t', 'c1'): (set(), ['p2', 'p1'])}
    """

    def __init__(self, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s = refresh_s
        self._clock = clock
        self._listed_at: dict[CustomerKey, float] = {}
        self._due: dict[CustomerKey, ListInputs] = {}
        self._waiting: dict[CustomerKey, tuple[float, ListInputs]] = {}
        self._waiting_due: list[tuple[float, CustomerKey]] = []  # a heap

    def __len__(self) -> int:
        """Customers due a list now (those still waiting out their interval excluded)."""
        return len(self._due)

    def note(self, customers: Iterable[tuple[CustomerKey, ListInputs, bool]]) -> None:
        """A batch's customers as it left them, each with whether they interacted with
        products in it."""
        now = self._clock()
        for key, inputs, interacted in customers:
            listed_at = self._listed_at.get(key)
            if listed_at is None or (interacted and now - listed_at >= self.refresh_s):
                self._list(key, inputs, now)
            elif interacted:
                due = listed_at + self.refresh_s
                if key not in self._waiting:
                    heapq.heappush(self._waiting_due, (due, key))
                self._waiting[key] = (due, inputs)
        self._list_waiting(now)

    def take(self, lists: int | None = None) -> dict[CustomerKey, ListInputs]:
        """The first ``lists`` customers due (all when None), no longer due."""
        self._list_waiting(self._clock())
        taken = dict(itertools.islice(self._due.items(), lists))
        for key in taken:
            del self._due[key]
        return taken

    def forget(self, key: CustomerKey) -> None:
        """Erasure: the customer is due nothing, and nothing of them is kept."""
        self._listed_at.pop(key, None)
        self._due.pop(key, None)
        self._waiting.pop(key, None)

    def _list(self, key: CustomerKey, inputs: ListInputs, now: float) -> None:
        self._listed_at[key] = now
        self._due[key] = inputs  # a customer due again keeps their place
        self._waiting.pop(key, None)

    def _list_waiting(self, now: float) -> None:
        while self._waiting_due and self._waiting_due[0][0] <= now:
            due, key = heapq.heappop(self._waiting_due)
            waiting = self._waiting.get(key)
            if waiting is not None and waiting[0] == due:  # else listed or erased since
                self._list(key, waiting[1], now)
