"""Identity stitching: a visitor's events belong to the customer they turn out to be.

An event with both ``anonymous_id`` and ``customer_id`` merges the visitor's history into
the customer once; later visitor-only events land on the customer (the visitor's alias).
The merge is a sequence of idempotent steps, resumed by redelivery after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import orjson

from feature_store.client import AsyncRedis, PipelineScript, execute_pipeline, is_cluster
from feature_store.customers import (
    APPLY_SCRIPT,
    Customer,
    CustomerKey,
    customer_from,
    lua_source,
    queue_apply,
)
from feature_store.keys import CustomerKeys, alias_key, anonymous_profile_id, customers_key
from feature_store.replies import text
from schemas.events import AnyEvent

log = logging.getLogger(__name__)

#: The per-customer keys ``merge_profile.lua`` takes, in order (the last one is the erasure
#: tombstone); the visitor's keys ``visitor_snapshot.lua`` reads are the first nine.
MERGE_KEY_SUFFIXES = ("profile", "events", "sessions", "categories", "recent", "tickets",
                      "bought", "orders", "days", "merged", "erased")
_SNAPSHOT_KEY_SUFFIXES = MERGE_KEY_SUFFIXES[:9]
#: What a merge deletes of the visitor: what it copied, and the recommendation list made
#: for the visitor alone (nobody reads it once their events land on the customer).
VISITOR_KEY_SUFFIXES = (*MERGE_KEY_SUFFIXES, "recos")


MERGE_SCRIPT = PipelineScript(lua_source("merge_profile.lua"))
SNAPSHOT_SCRIPT = PipelineScript(resources.files("feature_store").joinpath(
    "lua", "visitor_snapshot.lua").read_text())

Aliases = dict[tuple[str, str], str]  # (tenant, anonymous id) -> customer id


def profile_id_for(event: AnyEvent, aliases: Aliases,
                   visitors_own: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
                   ) -> str:
    """The profile an event updates: its customer, the visitor's customer, or the visitor.

    An event in ``visitors_own`` (tenant, event id) stays the visitor's even when the visitor
    points at a customer already (see :func:`resolve_aliases`)."""
    if event.customer_id:
        return event.customer_id
    assert event.anonymous_id is not None
    visitor = anonymous_profile_id(event.anonymous_id)
    if (event.tenant, event.event_id) in visitors_own:
        return visitor
    return aliases.get((event.tenant, event.anonymous_id)) or visitor


async def resolve_aliases(redis: AsyncRedis, events: Iterable[AnyEvent]
                          ) -> tuple[Aliases, set[tuple[str, str]]]:
    """Which anonymous-only events belong to a customer already: the customer of each
    stitched visitor, and the (tenant, event id) of the events the visitor's own profile
    holds already (one round trip, none without visitor-only events).

    Those stay the visitor's: they reach the customer through the merge, or did already.
    A batch cut short after the visitor was pointed at the customer but before the merge
    copied the visitor (a crash, Redis gone) is applied again with the alias in place;
    its visitor events, applied to the customer as well, would count twice.
    """
    visitor_events: list[tuple[str, str, str]] = [  # tenant, anonymous id, event id
        (e.tenant, e.anonymous_id, e.event_id) for e in events
        if e.customer_id is None and e.anonymous_id is not None]
    wanted = sorted({(tenant, anonymous_id) for tenant, anonymous_id, _ in visitor_events})
    if not wanted:
        return {}, set()
    async with redis.pipeline(transaction=False) as pipe:
        for tenant, anonymous_id in wanted:
            pipe.get(alias_key(tenant, anonymous_id))
        for tenant, anonymous_id, event_id in visitor_events:
            visitor = CustomerKeys(tenant, anonymous_profile_id(anonymous_id))
            pipe.zscore(visitor.key("events"), event_id)
        found = await pipe.execute()
    aliases = {pair: value.decode()
               for pair, value in zip(wanted, found[:len(wanted)], strict=True) if value}
    visitors_own = {(tenant, event_id) for (tenant, anonymous_id, event_id), held
                    in zip(visitor_events, found[len(wanted):], strict=True)
                    if held is not None and (tenant, anonymous_id) in aliases}
    return aliases, visitors_own


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    """(field, value) or (member, score) pairs from a flat reply."""
    return list(zip(flat[::2], flat[1::2], strict=True))


#: Queues ``WAIT`` for replicas behind a pipeline's writes; answers the check of its reply.
QueueWait = Callable[[Any], Callable[[list[Any]], None]]


def _no_wait(pipe: Any) -> Callable[[list[Any]], None]:
    return lambda replies: None


#: A visitor's merge into a customer: (tenant, anonymous id, customer id).
Merge = tuple[str, str, str]


def merge_waves(merges: Iterable[Merge]) -> list[list[Merge]]:
    """``merges`` in waves that each hold a visitor at most once, in order: a visitor whose
    events name two customers in one batch (a shared device) is merged into the second
    after the first, as one merge after the other would; the second then finds it empty.

    >>> merge_waves([("t", "v1", "a"), ("t", "v2", "a"), ("t", "v1", "b")])
    [[('t', 'v1', 'a'), ('t', 'v2', 'a')], [('t', 'v1', 'b')]]
    """
    waves: list[list[Merge]] = []
    seen: list[set[tuple[str, str]]] = []
    for merge in merges:
        visitor = merge[:2]
        wave = next((i for i, held in enumerate(seen) if visitor not in held), len(waves))
        if wave == len(waves):
            waves.append([])
            seen.append(set())
        waves[wave].append(merge)
        seen[wave].add(visitor)
    return waves


async def merge_visitors(redis: AsyncRedis, limits: tuple[int, int, int],
                         merges: Iterable[Merge], *, wait: QueueWait = _no_wait
                         ) -> dict[CustomerKey, Customer | None]:
    """Fold each visitor's history into their customer once, and point the visitor at them;
    answers the customers and visitors as the merges left them (a visitor: ``None``).

    The steps touch two hash slots, so they cannot be one transaction on a cluster;
    instead each is idempotent and the last one records completion (``<anon>|done`` in
    the customer's ``merged`` set). A crash anywhere in between is resumed by the
    redelivered stitching event: alias (set-if-absent), copy (guarded by the merged
    set), delete the visitor's keys, mark done. Three round trips for all the merges of a
    wave (see :func:`merge_waves`): the aliases with the visitors' snapshots (each read
    atomically by a script in the visitor's slot), the copies (a script each in the
    customer's slot, followed by ``wait``'s ``WAIT`` for replicas), the clean-up, which
    also reads them all back (on a cluster two: the visitors' keys deleted and unindexed,
    then completion recorded and all read). One merge at a time, a batch with a dozen
    logins waited for three dozen round trips.
    """
    found: dict[CustomerKey, Customer | None] = {}
    for wave in merge_waves(merges):
        found.update(await _merge_wave(redis, limits, wave, wait))  # later reads are newer
    return found


def _snapshot_from(replies: list[Any]) -> dict[str, Any]:
    """A visitor's keys as ``visitor_snapshot.lua`` read them, JSON-ready for the merge."""
    profile, events, sessions, categories, recent, tickets, bought, orders, days = replies
    return {
        "profile": {text(field): text(value) for field, value in _pairs(profile)},
        "events": [[text(member), int(float(score))] for member, score in _pairs(events)],
        "sessions": sorted(text(member) for member in sessions),
        "categories": [[text(member), float(score)] for member, score in _pairs(categories)],
        "recent": [[text(member), int(float(score))] for member, score in _pairs(recent)],
        "tickets": {text(field): text(value) for field, value in _pairs(tickets)},
        "bought": sorted(text(member) for member in bought),
        "orders": [[text(member), int(float(score))] for member, score in _pairs(orders)],
        "days": sorted(int(member) for member in days),
    }


async def _merge_wave(redis: AsyncRedis, limits: tuple[int, int, int], wave: list[Merge],
                      wait: QueueWait) -> dict[CustomerKey, Customer | None]:
    """The merges of ``wave`` (each visitor once), step by step, a round trip per step."""
    max_ids, recent_products, recent_orders = limits
    visitors = [CustomerKeys(tenant, anonymous_profile_id(anonymous_id))
                for tenant, anonymous_id, _ in wave]

    def alias_then_snapshot(pipe: Any) -> None:
        for (tenant, anonymous_id, customer_id), visitor in zip(wave, visitors, strict=True):
            pipe.set(alias_key(tenant, anonymous_id), customer_id, nx=True)
            SNAPSHOT_SCRIPT.queue(pipe, keys=[visitor.key(suffix)
                                              for suffix in _SNAPSHOT_KEY_SUFFIXES])

    # Safe to repeat after NOSCRIPT: SET NX and reads.
    replies = await execute_pipeline(redis, alias_then_snapshot, [SNAPSHOT_SCRIPT])
    snapshots = [_snapshot_from(read) for read in replies[1::2]]
    checking: list[Callable[[list[Any]], None]] = []

    def merge(pipe: Any) -> None:
        for (tenant, anonymous_id, customer_id), snapshot in zip(wave, snapshots, strict=True):
            customer = CustomerKeys(tenant, customer_id)
            MERGE_SCRIPT.queue(
                pipe, keys=[customer.key(suffix) for suffix in MERGE_KEY_SUFFIXES],
                args=[anonymous_id, orjson.dumps(snapshot), max_ids, recent_products,
                      recent_orders, customer_id, tenant])
        checking.append(wait(pipe))

    # Its own round trip: a failed merge must raise before any visitor is deleted below.
    # Safe to repeat after NOSCRIPT (no script ran: Redis loads none midway).
    replies = await execute_pipeline(redis, merge, [MERGE_SCRIPT])
    checking[-1](replies)
    outcomes = replies[:len(wave)]

    # One round trip, in this order: Redis runs a connection's commands in turn, so each
    # visitor is deleted and unindexed whenever its completion is recorded. Reading back
    # after that is safe to repeat after NOSCRIPT (deletes and set-adds are idempotent).
    # On a cluster the keys are on different masters, each running its share at once:
    # the deletes are a round trip of their own there, answered before completion is sent.
    cluster = is_cluster(redis)

    def delete_visitors(pipe: Any) -> None:
        for (tenant, _, _), visitor in zip(wave, visitors, strict=True):
            pipe.delete(*[visitor.key(suffix) for suffix in VISITOR_KEY_SUFFIXES])
            pipe.zrem(customers_key(tenant), visitor.customer_id)

    if cluster:
        async with redis.pipeline(transaction=False) as pipe:
            delete_visitors(pipe)
            await pipe.execute()

    def clean_up(pipe: Any) -> None:
        if not cluster:
            delete_visitors(pipe)
        for tenant, anonymous_id, customer_id in wave:
            pipe.sadd(CustomerKeys(tenant, customer_id).key("merged"), f"{anonymous_id}|done")
        for (tenant, _, customer_id), visitor in zip(wave, visitors, strict=True):
            for profile_id in (customer_id, visitor.customer_id):
                queue_apply(pipe, tenant, profile_id, [], limits=limits, updated_at_ms=0)

    reads = (await execute_pipeline(redis, clean_up, [APPLY_SCRIPT]))[-2 * len(wave):]
    found: dict[CustomerKey, Customer | None] = {}
    for (tenant, anonymous_id, customer_id), visitor, outcome, customer_read, visitor_read in zip(
            wave, visitors, outcomes, reads[::2], reads[1::2], strict=True):
        log.info("stitched visitor %s into customer %s (%s)", anonymous_id, customer_id,
                 text(outcome))
        found[(tenant, customer_id)] = customer_from(customer_read[1])
        found[(tenant, visitor.customer_id)] = customer_from(visitor_read[1])
    return found
