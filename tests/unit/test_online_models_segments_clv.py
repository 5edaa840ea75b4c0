"""Segments get distinct readable labels; CLV learns from window labels."""

from __future__ import annotations

import pickle
import random

from online_models.clv import ClvModel
from online_models.features import DAY_MS, behaviour_vector
from online_models.segments import Segmenter

NOW = 400 * DAY_MS

ARCHETYPES = {  # orders, revenue, days since last seen, tenure days, views
    "vip": (20, 3000.0, 3, 300, 200),
    "lapsing": (1, 40.0, 150, 200, 5),
    "browser": (0, 0.0, 1, 5, 30),
    "regular": (5, 250.0, 10, 200, 60),
}


def make_profile(kind: str, rng: random.Random) -> dict[str, object]:
    orders, revenue, recency, tenure, views = ARCHETYPES[kind]
    jitter = rng.uniform(0.8, 1.2)
    orders = round(orders * jitter)
    return {
        "orders": orders,
        "revenue": revenue * jitter,
        "avg_order_value": revenue * jitter / orders if orders else 0.0,
        "views": round(views * jitter),
        "sessions": max(1, round(views * jitter / 10)),
        "first_seen_at": NOW - int(tenure * jitter * DAY_MS),
        "last_seen_at": NOW - int(recency * jitter * DAY_MS),
        "category_affinity": {"music": 1.0},
    }


def trained_segmenter() -> tuple[Segmenter, dict[str, int]]:
    rng = random.Random(0)
    segmenter = Segmenter(n_clusters=4, warmup=100, seed=1)
    kinds = list(ARCHETYPES)
    for i in range(2000):
        segmenter.learn(behaviour_vector(make_profile(kinds[i % 4], rng), NOW))
    return segmenter, {
        kind: segmenter.assign(behaviour_vector(make_profile(kind, rng), NOW)) for kind in kinds
    }


def test_segments_separate_archetypes_with_distinct_readable_labels() -> None:
    """Verify that segments recover the archetypes and each gets its own label."""
    segmenter, assigned = trained_segmenter()
    assert len(set(assigned.values())) == 4
    labels = segmenter.labels()
    assert len(set(labels.values())) == 4
    assert labels[assigned["vip"]] == "frequent high spenders"
    assert labels[assigned["lapsing"]] == "lost one-time buyers"
    assert labels[assigned["browser"]] == "new browsers"
    centroid = segmenter.centroid(assigned["vip"])
    assert 15 < centroid["orders"] < 25 and centroid["revenue"] > 2000


def test_labels_follow_the_centroids_within_a_bounded_number_of_examples() -> None:
    """Verify that labels are derived again once RELABEL_EVERY examples moved the centroids,
    and are reused (not derived again) in between."""
    segmenter, _ = trained_segmenter()
    first = segmenter.labels()
    derived: list[int] = []
    original = segmenter._derive_labels

    def counting() -> dict[int, str]:
        derived.append(segmenter.example_count)
        return original()

    segmenter._derive_labels = counting  # type: ignore[method-assign]
    rng = random.Random(5)
    for _ in range(Segmenter.RELABEL_EVERY - 1):
        segmenter.learn(behaviour_vector(make_profile("browser", rng), NOW))
        assert segmenter.labels() is first
    segmenter.learn(behaviour_vector(make_profile("browser", rng), NOW))
    segmenter.labels()
    assert derived == [segmenter.example_count]


def test_segment_assignment_is_pure_and_picklable() -> None:
    """Verify that assign() learns nothing and a pickled segmenter assigns the same."""
    segmenter, _ = trained_segmenter()
    vector = behaviour_vector(make_profile("regular", random.Random(5)), NOW)
    means = dict(segmenter.model["StandardScaler"].means)
    segment = segmenter.assign(vector)
    assert dict(segmenter.model["StandardScaler"].means) == means
    assert pickle.loads(pickle.dumps(segmenter)).assign(vector) == segment


def test_clv_ranks_frequent_buyers_above_one_off_buyers() -> None:
    """Verify that CLV learns from window labels: frequent buyers are worth more."""
    clv = ClvModel(window_days=30, review_every_days=7)
    orders: dict[str, int] = {}
    for day in range(300):
        at = day * DAY_MS
        clv.advance_watermark(at)
        buyers = [f"weekly{i}" for i in range(10) if day % 7 == i % 7]
        buyers += [f"once{day}"]
        for cid in buyers:
            orders[cid] = orders.get(cid, 0) + 1
            first = 0 if cid.startswith("weekly") else at
            profile = {
                "orders": orders[cid],
                "revenue": 25.0 * orders[cid],
                "avg_order_value": 25.0,
                "first_seen_at": first,
                "last_seen_at": at,
                "last_order_at": at,
            }
            clv.observe_activity(cid, profile, at, purchases=1, spend=25.0)
    now = 300 * DAY_MS
    weekly = {
        "orders": 40,
        "revenue": 1000.0,
        "avg_order_value": 25.0,
        "first_seen_at": 0,
        "last_seen_at": now - 3 * DAY_MS,
        "last_order_at": now - 3 * DAY_MS,
    }
    once = {
        "orders": 1,
        "revenue": 25.0,
        "avg_order_value": 25.0,
        "first_seen_at": now - 20 * DAY_MS,
        "last_seen_at": now - 20 * DAY_MS,
        "last_order_at": now - 20 * DAY_MS,
    }
    high, low = clv.predict(weekly, now), clv.predict(once, now)
    assert high.clv > 5 * low.clv
    assert 2.0 < high.expected_purchases < 8.0  # about 4 weekly orders in 30 days
    assert high.clv == high.expected_purchases * high.expected_order_value
    assert clv.metrics_dict()["purchases_mae"] is not None
