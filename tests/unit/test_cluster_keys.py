"""The key layout and the store's multi-key commands are Redis Cluster-correct, checked
without a server: every script's keys share one hash slot, and the client's helpers split
MGET/MSET per slot on a cluster pipeline and keep one command on a single node's."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from agents.alerting import _feed_marker_key, alert_state_key
from feature_store.client import (
    _cluster_nodes,
    connect,
    queue_get_many,
    queue_set_many,
    queue_wait_for_replicas,
)
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    CUSTOMER_KEY_SUFFIXES,
    CustomerKeys,
    alias_key,
    anonymous_profile_id,
)
from feature_store.reads import queue_profile_reads
from feature_store.store import _SCRIPT_KEY_SUFFIXES, _SNAPSHOT_KEY_SUFFIXES


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


@pytest.mark.parametrize("tenant,customer", [("default", "c-000042"), ("shop1", "anon:a-7"),
                                             ("t", "x{y}z")])
def test_every_key_of_a_customer_shares_one_slot(tenant: str, customer: str) -> None:
    """Verify that each Lua script of the store (apply, merge, visitor snapshot, profile
    read) takes keys of one hash slot: all of them are one customer's."""
    keys = CustomerKeys(tenant, customer)
    assert set(_SCRIPT_KEY_SUFFIXES) | set(_SNAPSHOT_KEY_SUFFIXES) <= set(CUSTOMER_KEY_SUFFIXES)
    assert len({slot(key) for key in keys.all()}) == 1
    assert slot(alert_state_key(tenant, customer)) == slot(keys.profile)


def test_a_visitors_alias_lives_in_the_visitors_slot() -> None:
    """Verify that the alias set with the visitor's snapshot is in the visitor's slot."""
    visitor = CustomerKeys("shop1", anonymous_profile_id("a-1"))
    assert slot(alias_key("shop1", "a-1")) == slot(visitor.profile)


def test_the_alert_feed_script_touches_one_slot() -> None:
    """Verify that the alert feed's EVAL (once-marker, then XADD) keeps both keys in the
    stream's slot, and that the scripts in feature_store/lua name only their KEYS."""
    assert slot(_feed_marker_key("al_123")) == slot(ALERTS_STREAM_KEY)
    lua = resources.files("feature_store").joinpath("lua")
    for script in lua.iterdir():
        source = script.read_text()
        # Every key a script touches comes from KEYS: no key names built inside it.
        assert not re.search(r"redis\.call\('\w+',\s*'", source), script.name


def test_profile_reads_are_one_slot() -> None:
    """Verify that the API's profile read script takes one customer's keys."""

    class Recorder(list):  # type: ignore[type-arg]
        def evalsha(self, sha: str, count: int, *args: object) -> None:
            self.append(args[:count])

    pipe = Recorder()
    queue_profile_reads(pipe, "shop1", "c1")
    [keys] = pipe
    assert len({slot(str(key)) for key in keys}) == 1


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
    replies = [[f"{key}=".encode() for key in args[1:]] for args in queued]
    assert read(replies) == [f"{key}=".encode() for key in keys]
    queue_set_many(pipe, {key: b"v" for key in keys})
    queue_wait_for_replicas(pipe, 1, 100)
    assert len(pipe) == 2 * len(slots) + 1
    await pipe.reset()
    await cluster.aclose()


def test_several_cluster_nodes_may_be_named() -> None:
    """Verify that CRM_REDIS_URL may list several cluster nodes, the first one's URL kept
    whole (password, TLS) and the others as host and port."""
    first, others = _cluster_nodes("rediss://:pw@a:7000/0, b:7001,redis://c:7002")
    assert first == "rediss://:pw@a:7000/0"
    assert others == [("b", 7001), ("c", 7002)]
