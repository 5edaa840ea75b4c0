"""The Redis feature store against a real redis-server: order-independence, idempotency,
identity stitching and erasure, each checked against the offline reference."""

from __future__ import annotations

import random
from typing import Any

import pytest

from feature_store import AppliedEvent, CartSweep, FeatureStore, ProfileReader
from feature_store.keys import CustomerKeys, segment_members_key
from feature_store.scores import ScoreRecord
from feature_store.stitching import MERGE_SCRIPT
from schemas.events import AnyEvent, validate_event
from schemas.profile import ScoreStatus
from tests.reference_features import assert_same_features, reference_profiles

PRODUCTS = [f"p{i}" for i in range(30)]


async def apply(store: FeatureStore, events: list[AnyEvent]) -> list[AppliedEvent]:
    """A batch's events applied, as the worker applies them (no progress, no carts)."""
    return (await store.apply(events, started={}, carts=CartSweep())).events
CATEGORIES = ["books", "garden", "toys", "music"]


def random_events(rng: random.Random, count: int, customers: int = 5) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(count):
        customer = f"c{rng.randrange(customers)}"
        day, hour, minute = rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59)
        at = f"2026-02-{day:02d}T{hour:02d}:{minute:02d}:00Z"
        base = {"event_id": f"e{n}", "customer_id": customer, "occurred_at": at,
                "session_id": f"s{rng.randrange(8)}"}
        roll = rng.random()
        if roll < 0.6:
            base |= {"type": "click", "kind": rng.choice(
                ["page_view", "product_view", "add_to_cart", "remove_from_cart", "search",
                 "checkout_start"]), "product_id": rng.choice(PRODUCTS),
                "category": rng.choice(CATEGORIES)}
        elif roll < 0.85:
            items = [{"product_id": rng.choice(PRODUCTS), "quantity": rng.randint(1, 3),
                      "unit_price": round(rng.uniform(1, 80), 2),
                      "category": rng.choice(CATEGORIES)} for _ in range(rng.randint(1, 3))]
            total = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
            base |= {"type": "purchase", "order_id": f"o{n}", "items": items, "total": total,
                     "currency": "EUR"}
        else:
            base |= {"type": "ticket", "ticket_id": f"t{rng.randrange(4)}", "status": rng.choice(
                ["opened", "replied", "resolved", "reopened"])}
        events.append(base)
    return events


async def live_profiles(store: FeatureStore, ids: list[str]) -> dict[str, Any]:
    reader = ProfileReader(redis=store.redis)
    profiles = {}
    for customer_id in ids:
        profile = await reader.profile("default", customer_id)
        assert profile is not None, f"no profile for {customer_id}"
        profiles[customer_id] = profile.features.model_dump()
    return profiles


async def apply_in_batches(store: FeatureStore, events: list[dict[str, Any]], size: int) -> None:
    for start in range(0, len(events), size):
        await apply(store, [validate_event(e) for e in events[start:start + size]])


async def test_any_arrival_order_gives_the_reference_features(store: FeatureStore) -> None:
    """Verify that shuffled, duplicated delivery yields exactly the offline features."""
    rng = random.Random(3)
    events = random_events(rng, 400)
    delivered = events + rng.sample(events, 60)  # duplicates, same event ids
    rng.shuffle(delivered)
    await apply_in_batches(store, delivered, 37)
    expected = reference_profiles(events)
    live = await live_profiles(store, sorted(expected))
    for customer_id, features in expected.items():
        assert_same_features(live[customer_id], features, customer_id)


async def test_a_duplicate_changes_nothing(store: FeatureStore) -> None:
    """Verify that an event applied twice reports a duplicate and counts once."""
    event = random_events(random.Random(1), 1)[0] | {"type": "purchase", "order_id": "o1",
        "items": [{"product_id": "p1", "quantity": 1, "unit_price": 5.0}], "total": 5.0,
        "currency": "EUR"}
    first = await apply(store, [validate_event(event)])
    second = await apply(store, [validate_event(event)])
    assert [a.outcome for a in first + second] == ["ok", "duplicate"]
    profile = await ProfileReader(redis=store.redis).profile("default", event["customer_id"])
    assert profile is not None and profile.features.orders == 1


async def test_events_apply_after_redis_lost_its_scripts(store: FeatureStore) -> None:
    """Verify that after SCRIPT FLUSH (as after a Redis restart) a batch loads the script
    again and applies every event exactly once, with no extra round trip per batch before."""
    rng = random.Random(5)
    events = random_events(rng, 60)
    await apply_in_batches(store, events[:30], 30)
    await store.redis.script_flush()
    await store.redis.config_resetstat()

    await apply_in_batches(store, events[30:], 30)
    await apply_in_batches(store, events, 60)  # all duplicates now

    expected = reference_profiles(events)
    live = await live_profiles(store, sorted(expected))
    for customer_id, features in expected.items():
        assert_same_features(live[customer_id], features, customer_id)
    calls = await store.redis.info("commandstats")
    assert "cmdstat_script|exists" not in calls  # no SCRIPT EXISTS round trips per batch


async def test_late_events_never_move_last_seen_backwards(store: FeatureStore) -> None:
    """Verify that an older event arriving later leaves last_seen_at and last_order_at alone."""
    def purchase(n: int, at: str) -> dict[str, Any]:
        return {"event_id": f"e{n}", "customer_id": "c1", "occurred_at": at, "type": "purchase",
                "order_id": f"o{n}", "items": [{"product_id": "p", "quantity": 1,
                                                "unit_price": 2.0}], "total": 2.0,
                "currency": "EUR"}
    await apply(store, [validate_event(purchase(1, "2026-03-05T00:00:00Z"))])
    await apply(store, [validate_event(purchase(2, "2026-03-01T00:00:00Z"))])
    profile = await ProfileReader(redis=store.redis).profile("default", "c1")
    assert profile is not None
    assert profile.features.last_seen_at.isoformat() == "2026-03-05T00:00:00+00:00"
    assert profile.features.last_order_at.isoformat() == "2026-03-05T00:00:00+00:00"
    assert profile.features.first_seen_at.isoformat() == "2026-03-01T00:00:00+00:00"


def browsing_then_login(visitor: str, customer: str, login_id: str
                        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Three product views by an anonymous visitor, then the same session logging in."""
    browse = [{"event_id": f"a{n}", "anonymous_id": visitor, "session_id": "s-anon",
               "occurred_at": f"2026-04-01T10:0{n}:00Z", "type": "click",
               "kind": "product_view", "product_id": f"p{n}", "category": "toys"}
              for n in range(3)]
    login = {"event_id": login_id, "customer_id": customer, "anonymous_id": visitor,
             "session_id": "s-anon", "occurred_at": "2026-04-01T10:05:00Z", "type": "click",
             "kind": "page_view"}
    return browse, login


async def assert_merged(store: FeatureStore, events: list[dict[str, Any]], visitor: str,
                        customer: str) -> None:
    """The customer holds everything ``events`` say, and the visitor is gone for good."""
    expected = reference_profiles(events)
    live = await live_profiles(store, [customer])
    assert_same_features(live[customer], expected[customer], customer)
    reader = ProfileReader(redis=store.redis)
    assert await reader.profile("default", f"anon:{visitor}") is None
    assert await reader.customer_ids("default") == [customer]


@pytest.mark.parametrize("visitor_first", [True, False])
async def test_stitching_merges_a_visitor_once_in_any_order(
    store: FeatureStore, visitor_first: bool
) -> None:
    """Verify that a visitor's history lands on the customer, before or after the login."""
    browse, login = browsing_then_login("v1", "c9", "login")
    later = {"event_id": "a9", "anonymous_id": "v1", "session_id": "s2",
             "occurred_at": "2026-04-02T10:00:00Z", "type": "click", "kind": "search"}
    order = [*browse, login, later] if visitor_first else [login, *browse, later]
    for event in order:
        await apply(store, [validate_event(event)])
    # The visitor's browsing and the login in one batch: merged after the batch is applied.
    await store.redis.flushdb()
    await apply(store, [validate_event(event) for event in order])
    await apply(store, [validate_event(login)])  # a redelivered login merges nothing twice
    assert sorted(reference_profiles([*browse, login, later])) == ["c9"]
    await assert_merged(store, [*browse, login, later], "v1", "c9")


async def test_a_visitors_recommendation_list_goes_with_the_merge(store: FeatureStore) -> None:
    """Verify that the list the recommender made for a visitor is deleted when the visitor
    is merged into their customer (nobody reads it after, and it would stay for good)."""
    browse, login = browsing_then_login("v2", "c8", "login2")
    await apply(store, [validate_event(event) for event in browse])
    visitor_list = CustomerKeys("default", "anon:v2").recos
    await store.redis.set(visitor_list, b'[{"product_id": "p1"}]')
    await apply(store, [validate_event(login)])
    assert not await store.redis.exists(visitor_list)
    await assert_merged(store, [*browse, login], "v2", "c8")


async def test_logins_of_one_batch_merge_every_visitor_as_one_after_the_other_would(
    store: FeatureStore
) -> None:
    """Verify that a batch with several logins merges each visitor once: two visitors into
    one customer both land on them, and a visitor logging into a second customer (a shared
    device) stays with the first, the second getting only their own login; the batch names
    the visitors it merged, each once (the models forget them)."""
    browse_a, login_a = browsing_then_login("v4", "c5", "login4")
    browse_b, login_b = browsing_then_login("v5", "c5", "login5")
    browse_b = [{**event, "event_id": f"b{n}"} for n, event in enumerate(browse_b)]
    browse_c, login_c = browsing_then_login("v6", "c3", "login6")
    browse_c = [{**event, "event_id": f"c{n}"} for n, event in enumerate(browse_c)]
    second_login = {**login_c, "event_id": "login7", "customer_id": "c4",
                    "occurred_at": "2026-04-01T10:06:00Z"}
    await apply(store, [validate_event(event) for event in [*browse_a, *browse_b, *browse_c]])
    logins = await store.apply([validate_event(event)
                                for event in [login_a, login_b, login_c, second_login]],
                               started={}, carts=CartSweep())
    assert sorted(logins.merged_visitors) == [
        ("default", "anon:v4"), ("default", "anon:v5"), ("default", "anon:v6")]
    expected = {**reference_profiles([*browse_a, login_a, *browse_b, login_b]),
                **reference_profiles([*browse_c, login_c]),
                **reference_profiles([second_login])}
    live = await live_profiles(store, ["c3", "c4", "c5"])
    for customer in ("c3", "c4", "c5"):
        assert_same_features(live[customer], expected[customer], customer)
    assert sorted(await ProfileReader(redis=store.redis).customer_ids("default")) == [
        "c3", "c4", "c5"]


async def test_a_merge_cut_short_before_completion_is_finished_by_the_redelivered_login(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify that a crash after the copy but before the visitor is deleted and the merge
    marked done is resumed by the login's redelivery: copied once, visitor gone."""
    browse, login = browsing_then_login("v2", "c8", "login2")
    await apply(store, [validate_event(event) for event in browse])
    real_pipeline = store.redis.pipeline

    def crashing_before_completion(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute(*a: Any, **k: Any) -> Any:
            if any(str(command[-1]).endswith("|done") for command, _ in pipe.command_stack):
                raise ConnectionError("the worker died here")
            return await real_execute(*a, **k)

        pipe.execute = execute
        return pipe

    monkeypatch.setattr(store.redis, "pipeline", crashing_before_completion)
    with pytest.raises(ConnectionError):
        await apply(store, [validate_event(login)])
    monkeypatch.setattr(store.redis, "pipeline", real_pipeline)
    await apply(store, [validate_event(login)])  # the redelivery
    await assert_merged(store, [*browse, login], "v2", "c8")


async def test_a_batch_cut_short_after_the_alias_counts_its_visitor_events_once(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify that a batch holding a visitor's views and the login, cut short after the
    visitor was pointed at the customer but before the copy (a crash, or Redis gone), counts
    the views once when it is applied again: they already are the visitor's, so they reach
    the customer through the merge only, not also directly through the alias."""
    browse, login = browsing_then_login("v3", "c7", "login3")
    real_pipeline = store.redis.pipeline

    def failing_at_the_copy(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute(*a: Any, **k: Any) -> Any:
            if any(MERGE_SCRIPT.sha in map(str, command) for command, _ in pipe.command_stack):
                raise ConnectionError("Redis went away here")
            return await real_execute(*a, **k)

        pipe.execute = execute
        return pipe

    monkeypatch.setattr(store.redis, "pipeline", failing_at_the_copy)
    with pytest.raises(ConnectionError):
        await apply(store, [validate_event(event) for event in [*browse, login]])
    monkeypatch.setattr(store.redis, "pipeline", real_pipeline)
    again = await apply(store, [validate_event(event) for event in [*browse, login]])
    assert [applied.outcome for applied in again] == ["duplicate"] * 4
    await assert_merged(store, [*browse, login], "v3", "c7")


async def test_a_visitor_event_racing_a_merge_on_another_partition_lands_on_the_customer(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify that a visitor's event whose batch read "no alias" just before another worker
    pointed the visitor at a customer (the login on another partition) and copied it, is
    applied to the customer, not to a visitor about to be deleted: counted once, not lost."""
    import feature_store.store as store_module
    from feature_store.keys import alias_key

    browse, login = browsing_then_login("v4", "c6", "login4")
    await apply(store, [validate_event(event) for event in browse[:2]])
    racing = validate_event(browse[2])
    real_resolve = store_module.resolve_aliases

    async def resolved_just_before_the_login(redis: Any, events: Any) -> Any:
        found = await real_resolve(redis, events)
        if any(event.event_id == racing.event_id for event in events):
            # Right then, the other worker merges the visitor (alias, copy, clean-up).
            await apply(store, [validate_event(login)])
        return found

    monkeypatch.setattr(store_module, "resolve_aliases", resolved_just_before_the_login)
    [outcome] = await apply(store, [racing])
    assert (outcome.outcome, outcome.profile_id) == ("ok", "c6")
    monkeypatch.setattr(store_module, "resolve_aliases", real_resolve)
    assert await store.redis.get(alias_key("default", "v4")) == b"c6"
    await apply(store, [racing])  # a redelivery counts nothing twice
    await assert_merged(store, [*browse, login], "v4", "c6")


async def test_erasure_deletes_everything_and_blocks_later_events(store: FeatureStore) -> None:
    """Verify that erasure removes every key of the customer and drops their later events."""
    events = [e | {"customer_id": "c1"} for e in random_events(random.Random(5), 20)]
    await apply(store, [validate_event(e) for e in events])
    await store.erase(tenant="default", customer_id="c1", block_seconds=3600, receipt_id="r1")
    keys = {key.decode() for key in await store.redis.keys("crm:{default/c1}:*")}
    assert keys == {"crm:{default/c1}:erased"}
    later = events[0] | {"event_id": "new-one"}
    applied = await apply(store, [validate_event(later)])
    assert applied[0].outcome == "erased"
    reader = ProfileReader(redis=store.redis)
    assert await reader.profile("default", "c1") is None
    assert await reader.customer_ids("default") == [], "a blocked event must not index them"


def random_score_records(rng: random.Random, count: int) -> list[ScoreRecord]:
    """Scores of a few customers, some met twice, some not served yet, some moving segment."""
    status = ScoreStatus(status="ready", examples=500, needed=200, pending=3)
    records = []
    for n in range(count):
        segment = rng.choice([None, 0, 1, 2])
        records.append(ScoreRecord(
            tenant=rng.choice(["default", "shop-b"]), customer_id=f"c{rng.randrange(12)}",
            scored_at_ms=1_700_000_000_000 + n, churn_explanation=[], churn_status=status,
            churn_probability=rng.choice([None, round(rng.random(), 6)]), clv_status=status,
            clv=rng.choice([None, round(rng.uniform(0, 900), 6)]), segment=segment,
            segment_label=None if segment is None else f"segment {segment}",
            previous_segment=rng.choice([None, 0, 1, 2]), model_version="v1",
            segments=() if segment is None else (0, 1, 2),
            partition=rng.choice([None, 0, 1]),
            sentiment=rng.choice([None, -0.5]), anomaly_score=rng.choice([None, 0.9])))
    return records


async def stored_scores(store: FeatureStore) -> dict[str, Any]:
    """Every key's content, the write time aside."""
    contents: dict[str, Any] = {}
    async for raw in store.redis.scan_iter(count=1000):
        key = raw.decode()
        kind = (await store.redis.type(key)).decode()
        if kind == "hash":
            contents[key] = {k: v for k, v in (await store.redis.hgetall(key)).items()
                             if k != b"updated_at"}
        elif kind == "zset":
            contents[key] = await store.redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            contents[key] = await store.redis.smembers(key)
    return contents


async def test_a_customer_is_counted_in_one_segment_though_a_write_held_a_stale_previous(
        store: FeatureStore) -> None:
    """Verify that a score whose previous segment is stale (the sweep and a batch each read
    the profile before the other wrote it) still leaves the customer in one segment's set."""
    status = ScoreStatus(status="ready", examples=500, needed=200, pending=3)

    def scored(segment: int, previous: int | None) -> ScoreRecord:
        return ScoreRecord(
            tenant="default", customer_id="c1", scored_at_ms=1_700_000_000_000,
            churn_probability=0.2, churn_explanation=[], churn_status=status, clv=None,
            clv_status=status, segment=segment, segment_label=f"segment {segment}",
            previous_segment=previous, model_version="v1", segments=(0, 1, 2))

    await store.write_scores([scored(1, previous=0)])  # the batch: 0 -> 1
    await store.write_scores([scored(2, previous=0)])  # the sweep, having read 0 before
    members = {segment: await store.redis.smembers(segment_members_key("default", segment))
               for segment in (0, 1, 2)}
    assert members == {0: set(), 1: set(), 2: {b"c1"}}


async def test_a_batch_of_scores_is_stored_as_writing_them_one_at_a_time_would(
        store: FeatureStore) -> None:
    """Rankings, segment sets and scoring indexes get one command per key for a whole batch;
    what they hold must not depend on it, customers met twice in the batch included."""
    records = random_score_records(random.Random(5), 60)
    for record in records:
        await store.write_scores([record])
    one_at_a_time = await stored_scores(store)
    assert any(":members:" in key for key in one_at_a_time)
    await store.redis.flushdb()
    await store.write_scores(records)
    assert await stored_scores(store) == one_at_a_time
