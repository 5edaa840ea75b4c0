"""The key layout and the store's multi-key commands are Redis Cluster-correct, checked
without a server: every script's keys share one hash slot, and the client's helpers split
MGET/MSET per slot on a cluster pipeline and keep one command on a single node's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.crc import key_slot

from feature_store import CartTimer, Commit, FeatureStore
from feature_store.client import (
    _cluster_nodes,
    connect,
    queue_get_many,
    queue_set_many,
    queue_wait_for_replicas,
)
from feature_store.customers import CUSTOMER_SCRIPT_KEYS, queue_apply
from feature_store.feed import queue_feed
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    CUSTOMER_KEY_SUFFIXES,
    CustomerKeys,
    alert_feed_marker_key,
    alert_state_key,
    alias_key,
    anonymous_profile_id,
    progress_key,
    ranking_key,
    watermark_key,
)
from feature_store.ranking import queue_sketch
from feature_store.reads import queue_profile_reads
from feature_store.rule_state import CustomerAlertState
from feature_store.stitching import _SNAPSHOT_KEY_SUFFIXES, MERGE_KEY_SUFFIXES
from schemas.records import Alert, AlertKind


def slot(key: str | bytes) -> int:
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def keys_of(args: Sequence[Any]) -> list[Any]:
    """The keys of one command (its name first), as Redis Cluster routes them."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return list(args[3:3 + int(args[2])])
    if name == "MSET":
        return list(args[1::2])
    if name in ("MGET", "DEL"):
        return list(args[1:])
    if name == "WAIT":
        return []
    return [args[1]] if len(args) > 1 else []


class Recorder(list):  # type: ignore[type-arg]
    """A pipeline stand-in that records the scripts and reads queued on it (name, keys,
    args)."""

    def evalsha(self, sha: str, count: int, *args: object) -> None:
        self.append(("EVALSHA", sha, count, *args))

    def eval(self, source: str, count: int, *args: object) -> None:
        self.append(("EVAL", source, count, *args))

    def hgetall(self, key: str) -> None:
        self.append(("HGETALL", key))


def one_slot_each(commands: Sequence[Sequence[Any]]) -> None:
    for args in commands:
        keys = keys_of(args)
        assert len({slot(key) for key in keys}) <= 1, (args[0], keys)


@pytest.mark.parametrize("tenant,customer", [("default", "c-000042"), ("shop1", "anon:a-7"),
                                             ("t", "x{y}z")])
def test_every_key_of_a_customer_shares_one_slot(tenant: str, customer: str) -> None:
    """Verify that each per-customer Lua script of the store (apply, merge, visitor
    snapshot, profile read) takes keys of one hash slot: all of them are one customer's,
    the rule state among them."""
    keys = CustomerKeys(tenant, customer)
    assert (set(CUSTOMER_SCRIPT_KEYS) | set(MERGE_KEY_SUFFIXES) | set(_SNAPSHOT_KEY_SUFFIXES)
            <= set(CUSTOMER_KEY_SUFFIXES))
    assert len({slot(key) for key in keys.all()}) == 1
    assert slot(alert_state_key(tenant, customer)) == slot(keys.profile)
    if customer.startswith("anon:"):  # the apply script reads a visitor's alias as its own
        assert keys.key("alias") == alias_key(tenant, customer.removeprefix("anon:"))


def test_the_apply_script_of_a_customer_touches_one_slot() -> None:
    """Verify that apply_customer.lua, queued as the batch queues it, takes one
    customer's keys only (rule state included), visitors too."""
    pipe = Recorder()
    for profile_id in ("c1", "anon:a-9", "x{y}z"):
        queue_apply(pipe, "shop1", profile_id, [["e1", 1, {}, ""]], limits=(10, 5, 5),
                    updated_at_ms=1)
    assert len(pipe) == 3
    one_slot_each(pipe)
    assert all(len(keys_of(args)) == len(CUSTOMER_SCRIPT_KEYS) for args in pipe)


def test_a_visitors_alias_lives_in_the_visitors_slot() -> None:
    """Verify that the alias set with the visitor's snapshot is in the visitor's slot."""
    visitor = CustomerKeys("shop1", anonymous_profile_id("a-1"))
    assert slot(alias_key("shop1", "a-1")) == slot(visitor.profile)


def test_the_ranking_sketch_and_the_feed_scripts_touch_one_slot() -> None:
    """Verify that the CLV ranking's sketch script takes the ranking only, and the feed's
    EVAL (once-marker, then XADD) keeps both keys in the stream's slot."""
    pipe = Recorder()
    queue_sketch(pipe, "shop1")
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    alert = Alert(alert_id="al_123", tenant="shop1", customer_id="c1",
                  kind=AlertKind.CART_ABANDONMENT, score=1.0, threshold=0.5, reason="test",
                  triggered_by="e1", occurred_at=moment, emitted_at=moment, model_version="v")
    queue_feed(pipe, alert)
    one_slot_each(pipe)
    assert keys_of(pipe[0]) == [ranking_key("shop1", "clv")]
    assert keys_of(pipe[1]) == [alert_feed_marker_key("al_123"), ALERTS_STREAM_KEY]
    assert slot(alert_feed_marker_key("al_123")) == slot(ALERTS_STREAM_KEY)


def test_the_lua_scripts_name_only_their_keys() -> None:
    """Verify that the scripts in feature_store/lua build no key names of their own: every
    key they touch comes from KEYS (which the tests above hold to one slot)."""
    lua = resources.files("feature_store").joinpath("lua")
    for script in lua.iterdir():
        source = script.read_text()
        assert not re.search(r"redis\.call\('\w+',\s*'", source), script.name
        assert not re.search(r"redis\.call\('\w+',\s*[\w.]*\.\.", source), script.name


def test_profile_reads_are_one_slot() -> None:
    """Verify that the API's profile read script takes one customer's keys (the tenant's
    segments, read beside it, are a command of their own)."""
    pipe = Recorder()
    queue_profile_reads(pipe, "shop1", "c1")
    one_slot_each(pipe)


async def test_many_keys_are_one_command_on_a_node_and_one_per_slot_on_a_cluster() -> None:
    """Verify that queue_get_many/queue_set_many send one MGET/MSET on a single node and
    one per hash slot on a cluster pipeline, and read the values back in key order."""
    keys = [CustomerKeys("t", f"c{n}").key("alerts") for n in range(20)]
    keys += [CustomerKeys("t", "c0").profile]  # shares c0's slot
    slots = {slot(key) for key in keys}
    assert len(slots) < len(keys)

    node = connect("redis://127.0.0.1:1/0")
    async with node.pipeline(transaction=False) as pipe:
        read = queue_get_many(pipe, keys)
        queue_set_many(pipe, {key: b"v" for key in keys})
        queue_wait_for_replicas(pipe, 0, 100)
        assert len(pipe) == 2
        assert read([[f"v{n}".encode() for n in range(len(keys))], True]) == [
            f"v{n}".encode() for n in range(len(keys))]
    await node.aclose()

    cluster = RedisCluster(host="127.0.0.1", port=1)
    pipe = cluster.pipeline(transaction=False)
    read = queue_get_many(pipe, keys)
    assert len(pipe) == len(slots)
    # Each slot's MGET answers its keys' values, in the order they were queued.
    queued = [command.args for command in pipe._execution_strategy._command_queue]
    one_slot_each(queued)
    replies = [[f"{key}=".encode() for key in args[1:]] for args in queued]
    assert read(replies) == [f"{key}=".encode() for key in keys]
    queue_set_many(pipe, {key: b"v" for key in keys})
    queue_wait_for_replicas(pipe, 1, 100)
    assert len(pipe) == 2 * len(slots) + 1
    await pipe.reset()
    await cluster.aclose()


async def test_a_commit_on_a_cluster_is_one_slot_per_command_and_records_progress_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that FeatureStore.commit on a cluster client sends no command across slots
    (rule states MSET per slot), waits for replicas behind its writes when asked, and
    records progress and watermarks in a round trip of their own, after the rest."""
    trips: list[list[tuple[Any, ...]]] = []

    async def execute(self: ClusterPipeline, raise_on_error: bool = True) -> list[Any]:
        queued = [tuple(command.args) for command in self._execution_strategy._command_queue]
        trips.append(queued)
        await self.reset()
        return [3 if args[0] == "WAIT" else True for args in queued]

    async def initialize(self: Any) -> Any:
        return self

    monkeypatch.setattr(ClusterPipeline, "execute", execute)
    monkeypatch.setattr(ClusterPipeline, "initialize", initialize)
    monkeypatch.setattr(RedisCluster, "get_primaries", lambda self: [1, 2, 3])
    cluster = RedisCluster(host="127.0.0.1", port=1)
    store = FeatureStore(redis=cluster, wait_replicas=1)
    timer = CartTimer("clicks", 2, "shop1", "c1", "e1", 5)
    await store.commit(Commit(
        rule_states={("shop1", f"c{n}"): CustomerAlertState(churn_streak=n) for n in range(8)},
        timers_opened=[timer], timers_closed=[timer],
        recommendation_lists={("shop1", "c1"): b"[]"}, suppressed={"churn_risk": 1},
        progress={("clicks", 0): 10, ("purchases", 1): 4},
        watermarks={("clicks", 0): 99}, outcomes={("clicks", "ok"): 3}))
    assert len(trips) == 2
    writes, record = trips
    for trip in trips:
        one_slot_each(trip)
    assert sum(args[0] == "MSET" for args in writes) == len(
        {slot(alert_state_key("shop1", f"c{n}")) for n in range(8)})
    assert writes[-1][0] == "WAIT"
    recorded = {key for args in record for key in keys_of(args)}
    assert recorded >= {progress_key("clicks", 0), progress_key("purchases", 1),
                        watermark_key("clicks", 0)}
    assert not recorded & {key for args in writes for key in keys_of(args)}
    await cluster.aclose()


def test_several_cluster_nodes_may_be_named() -> None:
    """Verify that CRM_REDIS_URL may list several cluster nodes, the first one's URL kept
    whole (password, TLS) and the others as host and port."""
    first, others = _cluster_nodes("rediss://:pw@a:7000/0, b:7001,redis://c:7002")
    assert first == "rediss://:pw@a:7000/0"
    assert others == [("b", 7001), ("c", 7002)]
