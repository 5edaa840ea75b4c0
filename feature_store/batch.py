"""What the worker's batch hands the store and gets back: plain values, no Redis in sight.

One batch makes two round trips to Redis in the common case: :meth:`FeatureStore.apply`
(the events, and the batch's customers as they now stand) and :meth:`FeatureStore.commit`
(scores, rule state, cart timers, the alerts' feed, progress). See ``agents/batch.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from feature_store.customers import Customer, CustomerKey
from feature_store.ranking import RankingSketch
from feature_store.rule_state import CustomerAlertState
from feature_store.scores import ScoreRecord
from feature_store.tickets import TicketRecord
from schemas.records import Alert

__all__ = ["AppliedBatch", "AppliedEvent", "CartSweep", "CartTimer", "Commit", "Partition",
           "Position", "Progress", "ProgressLost", "check_marks"]

#: (topic, partition).
Partition = tuple[str, int]


@dataclass(frozen=True)
class Progress:
    """How far a partition's batches got: ``done``, the last offset of a batch recorded as
    finished; ``started``, the last offset of a batch whose events went to Redis to be
    applied (-1: none). An offset above ``done`` and at most ``started`` may have been
    processed by a batch that never finished (a crash, a failed round trip): its message is
    a redelivery. One above ``started`` was never processed, so an event id it carries that
    the store knows already was sent twice by the shop."""

    done: int = -1
    started: int = -1

    def redelivers(self, offset: int) -> bool:
        """Whether a message at ``offset`` (above ``done``) may have been processed before.

        >>> Progress(done=9, started=14).redelivers(12), Progress(9, 14).redelivers(15)
        (True, False)
        """
        return offset <= self.started


class ProgressLost(RuntimeError):
    """Redis holds a partition's started mark below the one the caller last saw: it lost its
    last writes (restarted from an append-only file missing its last second, a replica
    promoted behind its primary). The batch must be done again from what Redis knows."""


def check_marks(before: Mapping[Partition, int], known: Mapping[Partition, int]) -> None:
    """Raise :class:`ProgressLost` if Redis held a started mark (``before``, -1: none) below
    the one last seen (``known``).

    >>> check_marks({("t", 0): 4}, {("t", 0): 4})
    >>> check_marks({("t", 0): -1}, {("t", 0): 4})
    Traceback (most recent call last):
    ...
    feature_store.batch.ProgressLost: Redis lost writes: t/0 started at -1, last seen at 4
    """
    behind = [(topic, partition, mark, known[(topic, partition)])
              for (topic, partition), mark in before.items()
              if mark < known.get((topic, partition), -1)]
    if behind:
        raise ProgressLost("Redis lost writes: " + ", ".join(
            f"{topic}/{partition} started at {mark}, last seen at {seen}"
            for topic, partition, mark, seen in behind))


@dataclass(frozen=True)
class Position:
    """A partition as Redis recorded it: its progress and watermark (event time, ms)."""

    progress: Progress = field(default_factory=Progress)
    watermark: int | None = None


class AppliedEvent(NamedTuple):
    """What happened to one event: ``ok``, ``duplicate`` or ``erased``, on which profile
    (its customer, or an anonymous visitor's ``anon:...``)."""

    outcome: str
    profile_id: str


@dataclass(frozen=True)
class CartTimer:
    """An open cart's timer: fires when the watermark of its clicks partition passes
    ``deadline_ms`` (event time)."""

    topic: str
    partition: int
    tenant: str
    customer_id: str
    event_id: str
    deadline_ms: int


@dataclass(frozen=True)
class CartSweep:
    """What :meth:`FeatureStore.apply` reads of the cart timers: per clicks partition, the
    timers due by a watermark; and the recorded watermarks of ``partitions``."""

    due_by: Mapping[Partition, int] = field(default_factory=dict)
    partitions: Sequence[Partition] = ()


@dataclass
class AppliedBatch:
    """A batch applied: each event's outcome (in order), its customers as they now stand
    (and the owners of the due carts), the due cart timers, the recorded watermarks asked
    for, and each tenant's CLV ranking."""

    events: list[AppliedEvent]
    customers: dict[CustomerKey, Customer]
    due_carts: list[CartTimer] = field(default_factory=list)
    watermarks: dict[Partition, int] = field(default_factory=dict)
    clv_rankings: dict[str, RankingSketch] = field(default_factory=dict)
    #: Visitors this batch merged into their customers: their profiles are gone, and
    #: nothing should be kept under their ids any more.
    merged_visitors: list[CustomerKey] = field(default_factory=list)


@dataclass
class Commit:
    """Everything a finished batch writes, in one round trip (:meth:`FeatureStore.commit`)."""

    scores: Sequence[ScoreRecord] = ()
    #: Tickets triaged by the batch (see :mod:`feature_store.tickets`).
    tickets: Sequence[TicketRecord] = ()
    rule_states: Mapping[CustomerKey, CustomerAlertState] = field(default_factory=dict)
    timers_opened: Sequence[CartTimer] = ()
    timers_closed: Sequence[CartTimer] = ()
    #: Alerts held back because the customer declined marketing, by kind.
    suppressed: Mapping[str, int] = field(default_factory=dict)
    #: Alerts the broker acknowledged, for the API's feed (each id once).
    feed: Sequence[Alert] = ()
    #: Recommendation lists made in the worker (no recommender process), as JSON.
    recommendation_lists: Mapping[CustomerKey, bytes] = field(default_factory=dict)
    progress: Mapping[Partition, int] = field(default_factory=dict)
    watermarks: Mapping[Partition, int] = field(default_factory=dict)
    outcomes: Mapping[tuple[str, str], int] = field(default_factory=dict)
