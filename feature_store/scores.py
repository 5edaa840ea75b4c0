"""Scores in Redis: one way to write them, and the reads of the silence sweep.

Whether a customer was scored because of their own events or because the watermark moved on
while they were silent, the same :class:`ScoreRecord` is written the same way
(:func:`queue_score_writes`): the profile's score fields, the churn and CLV rankings, the
segment's member set and the partition's scoring index. A score that is not served yet (the
model is warming up) removes the customer from its ranking rather than leaving a guess there.

The scoring index of a partition (:func:`~feature_store.keys.scoring_index_key`) holds the
customers whose events arrive on it, scored by the event time of their scores: the worker
that owns the partition re-scores the oldest first (:func:`count_due`, :func:`read_due`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import TypeAdapter

from feature_store.client import Pipeline
from feature_store.customers import profile_from_fields
from feature_store.keys import (
    CustomerKeys,
    alert_state_key,
    ranking_key,
    scoring_index_key,
    segment_members_key,
)
from feature_store.replies import text
from feature_store.rule_state import CustomerAlertState
from schemas.profile import ScoreStatus
from schemas.records import Contribution

#: The profile fields the silence sweep reads: what the models' features need, and the
#: segment the customer is counted in.
SWEEP_FIELDS = ("orders", "revenue_cents", "items_bought", "views", "product_views",
                "cart_adds", "cart_removes", "checkouts_started", "sessions", "active_days",
                "searches", "tickets_total", "open_tickets", "first_seen_at", "last_seen_at",
                "last_order_at", "sentiment", "segment", "model_version")


@dataclass(frozen=True)
class ScoreRecord:
    """What the models say about one customer, as it is stored.

    ``previous_segment`` is the segment the profile held before; the customer leaves its
    member set and those of the tenant's other ``segments``. Leaving only the previous one's
    is not enough: the silence sweep and a batch may each read the profile before the other
    writes it, and the later write's previous segment is then stale (a customer counted in
    two segments, seen once in a quality run: sizes summing to 602 of 600 customers).
    ``partition`` the input partition whose scoring index holds the customer (``None``:
    leave the index alone, e.g. a customer updated through a visitor's partition).
    ``sentiment`` and ``anomaly_score`` come with tickets and orders only.
    """

    tenant: str
    customer_id: str
    scored_at_ms: int
    churn_probability: float | None
    churn_explanation: Sequence[Contribution]
    churn_status: ScoreStatus
    clv: float | None
    clv_status: ScoreStatus
    segment: int | None
    segment_label: str | None
    previous_segment: int | None
    model_version: str
    partition: int | None = None
    sentiment: float | None = None
    anomaly_score: float | None = None
    segments: tuple[int, ...] = ()
    #: The segmenter whose segment and label these are (see ``reads.current_segment``).
    segmenter: str | None = None


def queue_score_writes(pipe: Pipeline, records: Iterable[ScoreRecord],
                       updated_at_ms: int) -> None:
    """Queue the writes of ``records``, in order: one or two commands per record for its
    profile, then one per ranking, segment set and scoring index they touch.

    A batch scores hundreds of customers into the same few rankings and sets, so each of
    those gets one command for all of them rather than one per customer: the client packs,
    and parses the reply of, each command in Python, which cost more than Redis's work.
    Within one such group every (key, member) pair has one operation, so their order does
    not matter; a customer met again starts a new group, after the first.
    """
    group = _MemberWrites()
    for record in records:
        if (record.tenant, record.customer_id) in group.customers:
            group.queue(pipe)
            group = _MemberWrites()
        _queue_profile_scores(pipe, record, updated_at_ms)
        group.add(record)
    group.queue(pipe)


@dataclass
class _MemberWrites:
    """The rankings, segment sets and scoring indexes of some customers' scores, by key."""

    customers: set[tuple[str, str]] = field(default_factory=set)
    ranked: dict[str, dict[str, float]] = field(default_factory=dict)
    unranked: dict[str, list[str]] = field(default_factory=dict)
    joined: dict[str, list[str]] = field(default_factory=dict)
    left: dict[str, list[str]] = field(default_factory=dict)
    indexed: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, record: ScoreRecord) -> None:
        tenant, customer = record.tenant, record.customer_id
        self.customers.add((tenant, customer))
        for score, value in (("churn", record.churn_probability), ("clv", record.clv)):
            if value is None:
                self.unranked.setdefault(ranking_key(tenant, score), []).append(customer)
            else:
                self.ranked.setdefault(ranking_key(tenant, score), {})[customer] = value
        for segment in {*record.segments, record.previous_segment}:
            if segment is not None and segment != record.segment:
                self.left.setdefault(segment_members_key(tenant, segment), []).append(customer)
        if record.segment is not None:
            self.joined.setdefault(segment_members_key(tenant, record.segment),
                                   []).append(customer)
        if record.partition is not None:
            self.indexed.setdefault(scoring_index_key(tenant, record.partition),
                                    {})[customer] = record.scored_at_ms

    def queue(self, pipe: Pipeline) -> None:
        for key, members in self.unranked.items():
            pipe.zrem(key, *members)
        for key, mapping in self.ranked.items():
            pipe.zadd(key, mapping)  # type: ignore[arg-type]
        for key, members in self.left.items():
            pipe.srem(key, *members)
        for key, members in self.joined.items():
            pipe.sadd(key, *members)
        for key, positions in self.indexed.items():
            pipe.zadd(key, positions)  # type: ignore[arg-type]


#: The churn explanation as stored: one encoding call for the whole list, not a dump per
#: contribution.
_EXPLANATION = TypeAdapter(list[Contribution])


def _status_json(status: ScoreStatus) -> bytes:
    """A model's status as stored. A batch's customers share their models' statuses, so
    each is encoded once rather than once per customer."""
    return _encoded_status(tuple(status.__dict__.items()))


@functools.lru_cache(maxsize=64)
def _encoded_status(fields: tuple[tuple[str, Any], ...]) -> bytes:
    return orjson.dumps(dict(fields))


def _queue_profile_scores(pipe: Pipeline, record: ScoreRecord, updated_at_ms: int) -> None:
    """The score fields of one profile: set those the record has, drop those it lacks."""
    fields: dict[str, Any] = {
        "scored_at": record.scored_at_ms,
        "updated_at": updated_at_ms,
        "churn_status": _status_json(record.churn_status),
        "churn_explanation": _EXPLANATION.dump_json(list(record.churn_explanation)),
        "clv_status": _status_json(record.clv_status),
        "model_version": record.model_version,
    }
    absent = []
    for name, value in (("churn_probability", record.churn_probability), ("clv", record.clv)):
        if value is None:
            absent.append(name)
        else:
            fields[name] = f"{value:.6f}"
    if record.segment is None:
        absent += ["segment", "segment_label", "segmenter"]
    else:
        fields["segment"], fields["segment_label"] = record.segment, record.segment_label or ""
        fields["segmenter"] = record.segmenter or ""
    if record.sentiment is not None:
        fields["sentiment"] = f"{record.sentiment:.4f}"
    if record.anomaly_score is not None:
        fields["anomaly_score"] = f"{record.anomaly_score:.4f}"
    if record.partition is not None:
        fields["scoring_partition"] = record.partition
    profile = CustomerKeys(record.tenant, record.customer_id).profile
    pipe.hset(profile, mapping=fields)  # type: ignore[arg-type]
    if absent:
        pipe.hdel(profile, *absent)


@dataclass(frozen=True)
class DueCustomer:
    """A customer the sweep re-scores: their profile as the models read it."""

    tenant: str
    customer_id: str
    partition: int
    profile: dict[str, Any]
    previous_segment: int | None
    #: What the alert rules remember of them (the churn rule counts re-scores too).
    rule_state: CustomerAlertState = field(default_factory=CustomerAlertState)
    #: The version of the models their stored scores came from.
    scores_version: str | None = None


def queue_count_due(pipe: Pipeline, tenants: Iterable[str], partitions: Iterable[int],
                    watermark_ms: int) -> list[tuple[str, int]]:
    """Queue, per (tenant, partition), how many customers the index holds and how many of
    them were scored before the watermark (two replies each); answers the pairs in order."""
    pairs = [(tenant, partition) for tenant in tenants for partition in partitions]
    for tenant, partition in pairs:
        pipe.zcard(scoring_index_key(tenant, partition))
        pipe.zcount(scoring_index_key(tenant, partition), "-inf", f"({watermark_ms}")
    return pairs


def queue_due(pipe: Pipeline, wanted: Mapping[tuple[str, int], int], watermark_ms: int
              ) -> list[tuple[str, int]]:
    """Queue the ids of the ``wanted[(tenant, partition)]`` customers scored longest ago."""
    pairs = list(wanted)
    for tenant, partition in pairs:
        pipe.zrangebyscore(scoring_index_key(tenant, partition), "-inf", f"({watermark_ms}",
                           start=0, num=wanted[(tenant, partition)])
    return pairs


def queue_due_profiles(pipe: Pipeline, customers: Sequence[tuple[str, str, int]]) -> None:
    for tenant, customer, _ in customers:
        pipe.hmget(CustomerKeys(tenant, customer).profile, SWEEP_FIELDS)
        pipe.get(alert_state_key(tenant, customer))


def due_customers(customers: Sequence[tuple[str, str, int]], rows: Sequence[Any]
                  ) -> list[DueCustomer]:
    """The customers whose profiles still exist (an erased one may linger in an index)."""
    due = []
    for (tenant, customer, partition), row, state in zip(customers, rows[::2], rows[1::2],
                                                        strict=True):
        fields = {name: value for name, value in zip(SWEEP_FIELDS, row, strict=True)
                  if value is not None}
        if "last_seen_at" not in fields:
            continue
        segment = fields.pop("segment", None)
        version = fields.pop("model_version", None)
        due.append(DueCustomer(tenant, customer, partition, profile_from_fields(fields),
                               int(segment) if segment is not None else None,
                               CustomerAlertState.from_json(state),
                               text(version) if version is not None else None))
    return due


def chunk_for(total: int, due: int, *, interval_s: float, target_lag_s: float,
              smallest: int, largest: int) -> int:
    """How many of ``due`` customers (of ``total`` in the index) one tick re-scores: enough
    that all of them are re-scored within ``target_lag_s``, between ``smallest`` and
    ``largest``. Sized on the total, not on what is still due: sized on what is due, the
    chunks shrink as the sweep goes, and the last customers wait longest.

    >>> chunk_for(100_000, 100_000, interval_s=0.5, target_lag_s=60, smallest=50,
    ...           largest=5000)
    834
    >>> chunk_for(100_000, 900, interval_s=0.5, target_lag_s=60, smallest=50, largest=5000)
    834
    >>> chunk_for(100_000, 10, interval_s=0.5, target_lag_s=60, smallest=50, largest=5000)
    10
    """
    return min(due, max(smallest, min(largest, math.ceil(total * interval_s / target_lag_s))))
