"""Identity stitching: a visitor's events belong to the customer they turn out to be.

An event with both ``anonymous_id`` and ``customer_id`` merges the visitor's history into
the customer once; later visitor-only events land on the customer (the visitor's alias).
The merge is a sequence of idempotent steps, resumed by redelivery after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis

from feature_store.client import PipelineScript, execute_pipeline
from feature_store.customers import (
    APPLY_SCRIPT,
    Customer,
    CustomerKey,
    customer_from,
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


def _script(name: str) -> PipelineScript:
    lua = resources.files("feature_store").joinpath("lua")
    return PipelineScript(lua.joinpath("common.lua").read_text() + lua.joinpath(name).read_text())


MERGE_SCRIPT = _script("merge_profile.lua")
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


async def resolve_aliases(redis: aioredis.Redis, events: Iterable[AnyEvent]
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


async def merge_anonymous(redis: aioredis.Redis, limits: tuple[int, int, int], tenant: str,
                          anonymous_id: str, customer_id: str
                          ) -> dict[CustomerKey, Customer | None]:
    """Fold a visitor's history into a customer once, and point the visitor at them;
    answers the customer and the visitor as the merge left them (the visitor: ``None``).

    The steps touch two hash slots, so they cannot be one transaction on a cluster;
    instead each is idempotent and the last one records completion (``<anon>|done`` in
    the customer's ``merged`` set). A crash anywhere in between is resumed by the
    redelivered stitching event: alias (set-if-absent), copy (guarded by the merged
    set), delete the visitor's keys, mark done. Three round trips: the alias with the
    visitor's snapshot (read atomically by a script in the visitor's slot), the copy
    (a script in the customer's slot), the clean-up, which also reads both back.
    """
    visitor = CustomerKeys(tenant, anonymous_profile_id(anonymous_id))
    max_ids, recent_products, recent_orders = limits

    def alias_then_snapshot(pipe: Any) -> None:
        pipe.set(alias_key(tenant, anonymous_id), customer_id, nx=True)
        SNAPSHOT_SCRIPT.queue(pipe, keys=[visitor.key(suffix)
                                          for suffix in _SNAPSHOT_KEY_SUFFIXES])

    # Safe to repeat after NOSCRIPT: SET NX and a read.
    _, replies = await execute_pipeline(redis, alias_then_snapshot, [SNAPSHOT_SCRIPT])
    profile, events, sessions, categories, recent, tickets, bought, orders, days = replies
    snapshot = {
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
    customer = CustomerKeys(tenant, customer_id)

    def merge(pipe: Any) -> None:
        MERGE_SCRIPT.queue(
            pipe, keys=[customer.key(suffix) for suffix in MERGE_KEY_SUFFIXES],
            args=[anonymous_id, orjson.dumps(snapshot), max_ids, recent_products,
                  recent_orders, customer_id, tenant])

    # Its own round trip: a failed merge must raise before the visitor is deleted below.
    # Safe to repeat after NOSCRIPT (the script did not run).
    (outcome,) = await execute_pipeline(redis, merge, [MERGE_SCRIPT])

    # One round trip, in this order: Redis runs a connection's commands in turn, so the
    # visitor is deleted and unindexed whenever completion is recorded. Reading both back
    # after that is safe to repeat after NOSCRIPT (deletes and a set-add are idempotent).
    def clean_up(pipe: Any) -> None:
        pipe.delete(*[visitor.key(suffix) for suffix in MERGE_KEY_SUFFIXES])
        pipe.zrem(customers_key(tenant), visitor.customer_id)
        pipe.sadd(customer.key("merged"), f"{anonymous_id}|done")
        for profile_id in (customer_id, visitor.customer_id):
            queue_apply(pipe, tenant, profile_id, [], limits=limits, updated_at_ms=0)

    *_, customer_read, visitor_read = await execute_pipeline(redis, clean_up, [APPLY_SCRIPT])
    log.info("stitched visitor %s into customer %s (%s)", anonymous_id, customer_id,
             text(outcome))
    return {(tenant, customer_id): customer_from(customer_read[1]),
            (tenant, visitor.customer_id): customer_from(visitor_read[1])}
