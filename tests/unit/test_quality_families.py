"""The independent shop families: valid events, deterministic, and the truth they plant holds
in the events they emit."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from itertools import pairwise

import orjson
import pytest

from load_tests.quality.families import FAMILIES, Shop, generate_shop
from load_tests.quality.family_texts import NEGATIVE, NEUTRAL, POSITIVE
from schemas.events import validate_event

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
START = datetime(2025, 1, 1, tzinfo=UTC)
RFC3339_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def shops() -> dict[str, tuple[Shop, float]]:
    """Every family at the benchmark's small size (300 customers, 90 days), with how long
    each took to generate."""
    made = {}
    for family in FAMILIES:
        began = time.perf_counter()
        shop = generate_shop(family, customers=300, days=90, seed=11, start=START)
        made[family] = (shop, time.perf_counter() - began)
    return made


def sessions_by_customer(shop: Shop) -> dict[str, dict[str, int]]:
    """customer_id -> session_id -> when the session's first identified event happened."""
    sessions: dict[str, dict[str, int]] = defaultdict(dict)
    for event, at_ms in zip(shop.events, shop.event_ms, strict=True):
        if event.get("customer_id") and event.get("session_id"):
            sessions[event["customer_id"]].setdefault(event["session_id"], at_ms)
    return sessions


def owners(shop: Shop) -> list[str]:
    """The customer each event belongs to, anonymous ones through the planted cookie id."""
    by_cookie = {t.anonymous_id: t.customer_id for t in shop.truth.values()}
    return [e["customer_id"] if "customer_id" in e else by_cookie[e["anonymous_id"]]
            for e in shop.events]


def test_the_five_families_are_offered_with_group_shares_summing_to_one() -> None:
    """Verify that the five families the benchmark names exist and that each family's group
    shares add up to one."""
    assert {"abrupt_stop", "gradual_fade", "seasonal", "big_spenders", "browsers"} <= set(
        FAMILIES)
    for spec in FAMILIES.values():
        assert 2 <= len(spec.groups) <= 4
        assert sum(g.share for g in spec.groups) == pytest.approx(1.0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_event_is_valid_under_the_contract(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that every event validates under schemas.events, carries a unique id and an
    RFC 3339 time, comes in time order, and that every order's total is its items' sum."""
    shop, _ = shops[family]
    ids = set()
    for event, at_ms in zip(shop.events, shop.event_ms, strict=True):
        parsed = validate_event(event)
        assert parsed.occurred_at_ms == at_ms
        assert RFC3339_UTC_MS.match(event["occurred_at"])
        assert shop.start_ms <= at_ms < shop.end_ms
        assert event["tenant"] == "default"
        ids.add(event["event_id"])
        if event["type"] == "purchase":
            lines = sum(i["quantity"] * i["unit_price"] for i in event["items"])
            assert event["total"] == round(lines, 2)
    assert len(ids) == len(shop.events)
    assert list(shop.event_ms) == sorted(shop.event_ms)
    kinds = Counter(e.get("kind", e["type"]) for e in shop.events)
    assert set(kinds) == {"page_view", "product_view", "add_to_cart", "remove_from_cart",
                          "search", "checkout_start", "purchase", "ticket"}


def test_the_same_arguments_give_byte_identical_events() -> None:
    """Verify that a shop is a pure function of its arguments (no global random, no clock),
    and that another seed gives another shop."""
    def dump(seed: int) -> bytes:
        shop = generate_shop("seasonal", customers=60, days=60, seed=seed, start=START)
        return orjson.dumps([shop.events, shop.ticket_truth])

    assert dump(3) == dump(3)
    assert dump(3) != dump(4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_churner_acts_after_stopping_and_all_stop_weeks_before_the_end(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that a churner's last event is their stopped_at_ms, at least 14 days before the
    end (a shorter silence could not be told from a pause), and that non-churners have none."""
    shop, _ = shops[family]
    last: dict[str, int] = {}
    for customer, at_ms in zip(owners(shop), shop.event_ms, strict=True):
        last[customer] = at_ms
    for truth in shop.truth.values():
        assert truth.last_event_ms == last[truth.customer_id]
        if truth.churned:
            assert truth.stopped_at_ms == last[truth.customer_id]
            assert shop.end_ms - truth.stopped_at_ms >= 14 * DAY_MS
        else:
            assert truth.stopped_at_ms is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_between_a_quarter_and_45_percent_churn(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that each family's churn share is in the planted range."""
    shop, _ = shops[family]
    assert 0.25 <= shop.churn_share <= 0.45


def test_abrupt_stop_churners_stop_by_mid_period_and_the_others_go_on(
        shops: dict[str, tuple[Shop, float]]) -> None:
    """Verify that in abrupt_stop every churner is gone by the middle of the period (half a
    day's jitter) and that nearly all the others are seen after it."""
    shop, _ = shops["abrupt_stop"]
    middle = (shop.start_ms + shop.end_ms) // 2
    churners = [t for t in shop.truth.values() if t.churned]
    assert all(t.stopped_at_ms is not None and t.stopped_at_ms < middle + DAY_MS
               for t in churners)
    stayers = [t for t in shop.truth.values() if not t.churned]
    assert sum(t.last_event_ms > middle + DAY_MS for t in stayers) >= 0.9 * len(stayers)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_customers_join_at_different_times_in_the_first_third(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that customers' first events spread over the first third of the period."""
    shop, _ = shops[family]
    third = (shop.end_ms - shop.start_ms) / 3
    joined = [(t.joined_at_ms - shop.start_ms) / third for t in shop.truth.values()]
    assert all(0 <= j < 1 for j in joined)
    assert min(joined) < 0.1 and max(joined) > 0.9


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_about_80_percent_of_product_views_are_in_the_favourite_category(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that the planted favourite category takes 70-90% of product views, overall and
    for the median customer with enough views to tell."""
    shop, _ = shops[family]
    views: Counter[str] = Counter()
    favourite: Counter[str] = Counter()
    for event, customer in zip(shop.events, owners(shop), strict=True):
        if event.get("kind") == "product_view":
            views[customer] += 1
            favourite[customer] += event["category"] == shop.truth[customer].favourite_category
    assert 0.7 <= sum(favourite.values()) / sum(views.values()) <= 0.9
    shares = [favourite[c] / n for c, n in views.items() if n >= 20]
    assert 0.7 <= statistics.median(shares) <= 0.9


def test_customers_buy_their_favourite_products_more_than_the_best_sellers(
        shops: dict[str, tuple[Shop, float]]) -> None:
    """Verify that a customer's favourite products (drawn from a taste cluster of the
    favourite category) are a large share of what they buy, larger than the shop's ten best
    sellers: the signal a collaborative recommender can use and a popularity list cannot."""
    shop, _ = shops["big_spenders"]
    bought = [(e["customer_id"], item["product_id"]) for e in shop.events
              if e["type"] == "purchase" for item in e["items"]]
    best_sellers = {p for p, _ in Counter(p for _, p in bought).most_common(10)}
    favourite_share = statistics.mean(
        p in shop.truth[c].favourite_products for c, p in bought)
    best_seller_share = statistics.mean(p in best_sellers for _, p in bought)
    assert favourite_share > 0.35
    assert favourite_share > best_seller_share
    for truth in shop.truth.values():
        categories = {shop.catalogue.by_category[truth.favourite_category][0].category}
        assert {p.category for p in shop.catalogue.products
                if p.product_id in truth.favourite_products} == categories


def group_stats(shop: Shop) -> list[dict[str, float]]:
    """Per group: mean order value, orders per customer, cart-to-order ratio."""
    order_totals: defaultdict[int, list[float]] = defaultdict(list)
    carted_sessions: defaultdict[int, set[str]] = defaultdict(set)
    ordered_sessions: defaultdict[int, set[str]] = defaultdict(set)
    for event in shop.events:
        if "customer_id" not in event:
            continue
        group = shop.truth[event["customer_id"]].group
        if event["type"] == "purchase":
            order_totals[group].append(event["total"])
            ordered_sessions[group].add(event["session_id"])
        elif event.get("kind") == "add_to_cart":
            carted_sessions[group].add(event["session_id"])
    members = Counter(t.group for t in shop.truth.values())
    return [{"order_value": statistics.mean(order_totals[g] or [0.0]),
             "orders_per_customer": len(order_totals[g]) / members[g],
             "cart_to_order": len(ordered_sessions[g]) / max(1, len(carted_sessions[g]))}
            for g in range(len(shop.groups))]


def test_groups_differ_in_their_rates_as_planted(
        shops: dict[str, tuple[Shop, float]]) -> None:
    """Verify that the planted groups show in the events: big spenders' orders are several
    times the small buyers' and rarer; browsers almost never buy; window shoppers abandon
    their carts where buyers check out."""
    big, small = group_stats(shops["big_spenders"][0])
    assert big["order_value"] > 5 * small["order_value"]
    assert small["orders_per_customer"] > 2 * big["orders_per_customer"]

    frequent, rare_big, browsing = group_stats(shops["abrupt_stop"][0])
    assert rare_big["order_value"] > 4 * frequent["order_value"]
    assert browsing["orders_per_customer"] < 0.1 * frequent["orders_per_customer"]

    window, abandoners, buyers = group_stats(shops["browsers"][0])
    assert window["cart_to_order"] < 0.2 and abandoners["cart_to_order"] < 0.25
    assert buyers["cart_to_order"] > 0.5
    assert buyers["orders_per_customer"] > 5 * window["orders_per_customer"]


def ranks(values: list[float]) -> list[int]:
    """Each value's rank (0 = smallest), for a rank correlation."""
    ranked = [0] * len(values)
    for rank, index in enumerate(sorted(range(len(values)), key=values.__getitem__)):
        ranked[index] = rank
    return ranked


def test_planted_basket_values_rank_actual_spend_and_big_spenders_differ_widely(
        shops: dict[str, tuple[Shop, float]]) -> None:
    """Verify that a customer's planted mean basket value ranks their actual spend per order
    (what a CLV model must recover; a product dearer than the basket overshoots it), and that
    big spenders' spend per order differs a lot between them, not only from small buyers."""
    shop, _ = shops["big_spenders"]
    buyers = [t for t in shop.truth.values() if t.orders >= 2]
    planted = [t.mean_basket_value for t in buyers]
    actual = [t.revenue / t.orders for t in buyers]
    assert statistics.correlation(ranks(planted), ranks(actual)) > 0.7
    big = [t.revenue / t.orders for t in shop.truth.values() if t.group == 0 and t.orders]
    lower, _, upper = statistics.quantiles(big, n=4)
    assert upper > 2 * lower


def test_seasonal_shoppers_fall_silent_for_over_30_days_and_come_back() -> None:
    """Verify that burst shoppers' sessions are either close together (inside a burst) or more
    than 30 days apart, and that burst shoppers who did not churn come back after a silence."""
    shop = generate_shop("seasonal", customers=200, days=150, seed=2, start=START)
    sessions = sessions_by_customer(shop)
    came_back = 0
    bursty = [t for t in shop.truth.values() if t.burst_period_days is not None]
    for truth in bursty:
        times = sorted(sessions[truth.customer_id].values())
        gaps = [(b - a) / DAY_MS for a, b in pairwise(times)]
        assert all(gap < 12.5 or gap > 30 for gap in gaps)
        came_back += not truth.churned and any(gap > 30 for gap in gaps)
    alive = sum(not t.churned for t in bursty)
    assert came_back >= 0.8 * alive


def test_fading_churners_visit_less_and_less_before_they_stop() -> None:
    """Verify that in gradual_fade churners' sessions thin out after their fade begins: the
    three weeks after it hold well under half the sessions of the three weeks before."""
    shop = generate_shop("gradual_fade", customers=300, days=120, seed=4, start=START)
    sessions = sessions_by_customer(shop)
    before = after = 0
    for truth in shop.truth.values():
        fade = truth.fade_started_at_ms
        if fade is None or fade - 3 * WEEK_MS < truth.joined_at_ms:
            continue
        times = sessions[truth.customer_id].values()
        before += sum(fade - 3 * WEEK_MS <= t < fade for t in times)
        after += sum(fade + WEEK_MS <= t < fade + 4 * WEEK_MS for t in times)
    assert before > 50
    assert after < 0.4 * before


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ticket_truth_agrees_with_csat_and_lifecycle(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that every ticket has a planted sentiment, that clear-cut negative tickets are
    resolved with CSAT 1-2, positive ones with 4-5 and neutral ones with 3, and that a ticket
    goes opened -> (replied) -> resolved with one subject and body."""
    shop, _ = shops[family]
    statuses: defaultdict[str, list[str]] = defaultdict(list)
    texts: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
    for event in shop.events:
        if event["type"] != "ticket":
            continue
        ticket, sentiment = event["ticket_id"], shop.ticket_truth[event["ticket_id"]]
        statuses[ticket].append(event["status"])
        texts[ticket].add((event["subject"], event["body"]))
        if event["status"] == "resolved":
            allowed = {-1: {1, 2}, 0: {3}, 1: {4, 5}}[sentiment]
            assert event["csat"] in allowed
        else:
            assert "csat" not in event
    assert set(statuses) == set(shop.ticket_truth)
    for ticket, seen in statuses.items():
        assert seen in (["opened"], ["opened", "replied"], ["opened", "resolved"],
                        ["opened", "replied", "resolved"])
        assert len(texts[ticket]) == 1
    assert set(shop.ticket_truth.values()) == {-1, 0, 1}
    assert len(statuses) <= 3 * len(shop.truth)


def test_ticket_wording_is_plentiful_and_its_own() -> None:
    """Verify that there are several dozen templates, each with alternative subjects."""
    templates = NEGATIVE + NEUTRAL + POSITIVE
    assert len(templates) >= 36 and min(len(NEGATIVE), len(NEUTRAL), len(POSITIVE)) >= 12
    assert all(len(t.subjects) >= 2 for t in templates)
    assert len({t.body for t in templates}) == len(templates)


def test_anonymous_sessions_log_in_with_an_event_carrying_both_ids(
        shops: dict[str, tuple[Shop, float]]) -> None:
    """Verify that 5-25% of sessions start anonymous and that each such session's visitor is
    stitched to the right customer by an event carrying both ids, before any checkout."""
    shop, _ = shops["browsers"]
    cookie = {t.customer_id: t.anonymous_id for t in shop.truth.values()}
    anonymous_sessions: set[str] = set()
    stitched: set[str] = set()
    all_sessions = set()
    for event in shop.events:
        session = event.get("session_id")
        if session is None:
            continue
        all_sessions.add(session)
        if "customer_id" not in event:
            assert session not in stitched
            assert event["type"] == "click" and event["kind"] != "checkout_start"
            anonymous_sessions.add(session)
        elif "anonymous_id" in event:
            assert event["anonymous_id"] == cookie[event["customer_id"]]
            stitched.add(session)
    assert 0.05 <= len(anonymous_sessions) / len(all_sessions) <= 0.25
    assert anonymous_sessions <= stitched


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_300_customers_over_90_days_fit_the_event_and_time_budget(
        shops: dict[str, tuple[Shop, float]], family: str) -> None:
    """Verify that a 300-customer, 90-day shop stays under 40,000 events and 5 seconds."""
    shop, seconds = shops[family]
    assert 5_000 < len(shop.events) < 40_000
    assert seconds < 5.0


def test_the_holdout_split_partitions_the_events(
        shops: dict[str, tuple[Shop, float]]) -> None:
    """Verify that events_until and events_after split the events at a moment, nothing lost
    and nothing twice."""
    shop, _ = shops["gradual_fade"]
    cut = shop.event_ms[len(shop.event_ms) // 2]
    first, later = shop.events_until(cut), shop.events_after(cut)
    assert first + later == shop.events
    assert all(e["occurred_at"] < later[0]["occurred_at"] for e in first[-5:])
    assert later[0]["occurred_at"] == shop.events[len(first)]["occurred_at"]


def test_unknown_families_and_naive_start_times_are_refused() -> None:
    """Verify that a typo in a family name or a start without a time zone fails loudly."""
    with pytest.raises(KeyError, match="abrupt_stop"):
        generate_shop("abrupt", customers=1, days=30, seed=1, start=START)
    with pytest.raises(ValueError, match="timezone"):
        generate_shop("browsers", customers=1, days=30, seed=1, start=datetime(2025, 1, 1))
