"""A simulated web shop: customers with hidden ground truth, producing events in event time.

:class:`ShopSimulator` yields JSON-ready event dicts, exactly per the event contract, in global
event-time order (a heap of every customer's next action), deterministic by seed;
:func:`simulator.run.run_simulation` sends them through the producer SDK.

The hidden truth (see :mod:`simulator.population`): five latent segments (loyal high
spenders, bargain hunters, window shoppers who rarely buy but fill carts, one-time buyers,
support-heavy customers), ~36% of customers churning at a date within the period (activity
fades over the 30 days before it, then stops: no event at or after ``churn_at``), tastes
shared within 20 taste clusters over a Zipf-popular catalogue (so collaborative filtering beats
popularity), a ticket mood (happy / neutral / angry: wording and CSAT) and an ~80% marketing
consent. Sessions (see :mod:`simulator.sessions`) have page and product views, searches with
query text, cart adds and removals, checkouts and purchases; some start anonymously and stitch
at a ``/login`` page view carrying both ``anonymous_id`` and ``customer_id``. Anonymous events
carry neither ``customer_id`` nor ``marketing_consent``. Tickets go opened -> replied ->
resolved (with CSAT), sometimes reopened. Times are UTC with milliseconds (``...T10:00:00.000Z``).

>>> from datetime import UTC, datetime
>>> sim = ShopSimulator(customers=20, seed=1, start=datetime(2026, 1, 1, tzinfo=UTC), days=30)
>>> events = list(sim.events())
>>> events == list(sim.events())
True
>>> events[0]["event_id"], events[0]["type"], events[0]["tenant"]
('ev-1-0', 'click', 'default')
>>> sorted(sim.ground_truth()[0])[:4]
['anonymous_ids', 'churn_at', 'consent', 'customer_id']
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.topics import CLICKS, PURCHASES, TICKETS
from simulator.catalogue import Catalogue
from simulator.population import DAY_MS, Customer, build_population
from simulator.sessions import SessionWriter

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_DAYS = 180.0
TOPIC_BY_TYPE = {"click": CLICKS, "purchase": PURCHASES, "ticket": TICKETS}


class ShopSimulator:
    """``customers`` simulated customers of one shop over ``days`` days from ``start``.

    The population (segments, tastes, churn dates, moods) is drawn once from ``seed``;
    :meth:`events` replays the same event stream on every call.
    """

    def __init__(
        self,
        *,
        customers: int,
        seed: int,
        start: datetime = DEFAULT_START,
        catalogue_size: int = 2000,
        days: float = DEFAULT_DAYS,
        customer_prefix: str = "c-",
        tenant: str = "default",
    ) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        if start.tzinfo is None:
            raise ValueError("start must carry a UTC offset")
        if days <= 0:
            raise ValueError("days must be positive")
        self.seed = seed
        self.start = start
        self.end = start + timedelta(days=days)
        self.tenant = tenant
        self._start_ms = int(start.timestamp() * 1000)
        self._end_ms = int(self.end.timestamp() * 1000)
        world = random.Random(f"shop-world-{seed}")
        self.catalogue = Catalogue.build(world, size=catalogue_size)
        self.customers: list[Customer] = build_population(
            world,
            self.catalogue,
            customers=customers,
            start_ms=self._start_ms,
            end_ms=self._end_ms,
            prefix=customer_prefix,
            seed=seed,
        )

    def ground_truth(self) -> list[dict[str, Any]]:
        """One JSON-ready record per customer: segment, churn date, tastes, mood, consent."""
        return [customer.truth(self.catalogue) for customer in self.customers]

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event of the simulated period, in event-time order (ties by creation order).

        Each dict is a complete event: ``event_id`` is ``ev-{seed}-{n}`` with ``n`` counting
        from 0 in emission order. Mutating a yielded dict does not affect later events, and
        each call is an independent replay (several may run side by side).
        """
        writer = SessionWriter(
            random.Random(f"shop-behaviour-{self.seed}"),
            self.catalogue,
            seed=self.seed,
            tenant=self.tenant,
            end_ms=self._end_ms,
        )
        heap = writer.heap
        for customer in self.customers:
            writer.schedule_session(customer, customer.first_ms)
        prefix = f"ev-{self.seed}-"
        # RFC 3339 UTC with milliseconds from lookup tables: ~4x cheaper than isoformat().
        clock, millis = _clock_tables()
        day, date = -1, ""
        number = 0
        pop, replace, seq = heapq.heappop, heapq.heapreplace, writer.seq
        while heap:
            item = heap[0][2]
            if type(item) is list:  # a run of timed events, latest last popped first
                at_ms, event = item.pop()
                if not item:
                    pop(heap)
                else:
                    entry = (item[-1][0], next(seq), item)
                    size = len(heap)
                    # Fast path: the run's next event still comes before both children of
                    # the root, so it may stay on top without sifting.
                    if (size < 2 or entry[0] < heap[1][0]) and (
                        size < 3 or entry[0] < heap[2][0]
                    ):
                        heap[0] = entry
                    else:
                        replace(heap, entry)
            else:  # a customer whose next session starts now
                at_ms = pop(heap)[0]
                writer.session(item, at_ms)
                continue
            event["event_id"] = prefix + str(number)
            number += 1
            if at_ms // DAY_MS != day:
                day = at_ms // DAY_MS
                date = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")
            second, ms = divmod(at_ms % DAY_MS, 1000)
            event["occurred_at"] = date + clock[second] + millis[ms]
            yield event


@functools.cache
def _clock_tables() -> tuple[list[str], list[str]]:
    """``HH:MM:SS`` for every second of a day, and ``.mmmZ`` for every millisecond."""
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]
    return clock, [f".{ms:03d}Z" for ms in range(1000)]
