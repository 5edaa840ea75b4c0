"""Segments get distinct readable labels; CLV learns from window labels."""

from __future__ import annotations

import json
import math
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from online_models import segments
from online_models.clv import ClvModel
from online_models.features import DAY_MS, behaviour_vector
from online_models.segments import FEATURES, Segmenter, adjusted_rand

NOW = 400 * DAY_MS

ARCHETYPES = {  # orders per week, spend per order, views per visit, days between visits
    "frequent small baskets": (2.0, 15.0, 6, 3.0),
    "big spenders, rare": (0.1, 400.0, 8, 20.0),
    "browsers": (0.0, 0.0, 25, 4.0),
}


def make_profile(kind: str, rng: random.Random, *, spend_factor: float = 1.0
                 ) -> dict[str, object]:
    """A customer of ``kind`` seen over 140 days, with some individual spread."""
    per_week, spend, views, gap = ARCHETYPES[kind]
    jitter = lambda: rng.uniform(0.8, 1.25)  # noqa: E731
    span_days = 140
    visits = max(2, round(span_days / (gap * jitter())))
    orders = round(per_week * span_days / 7 * jitter())
    revenue = orders * spend * spend_factor * jitter()
    return {
        "orders": orders,
        "revenue": revenue,
        "avg_order_value": revenue / orders if orders else 0.0,
        "views": round(visits * views * jitter()),
        "active_days": visits,
        "first_seen_at": NOW - span_days * DAY_MS,
        "last_seen_at": NOW,
    }


def trained_segmenter(customers: int = 600) -> Segmenter:
    rng = random.Random(0)
    segmenter = Segmenter(refit_every=300, seed=1)
    kinds = list(ARCHETYPES)
    for i in range(customers):
        kind = kinds[i % len(kinds)]
        segmenter.learn(f"{kind}-{i}", behaviour_vector(make_profile(kind, rng)))
    return segmenter


def assigned(segmenter: Segmenter, rng: random.Random, **options: float) -> dict[str, int]:
    out = {}
    for kind in ARCHETYPES:
        segment = segmenter.assign(behaviour_vector(make_profile(kind, rng, **options)))
        assert segment is not None
        out[kind] = segment
    return out


def test_segments_recover_the_kinds_of_customers_with_labels_in_a_marketers_words() -> None:
    """Verify that the number of segments is found, each kind gets its own, and the labels
    say what the kinds are."""
    segmenter = trained_segmenter()
    segments = assigned(segmenter, random.Random(7))
    assert len(segmenter.centres) == 3
    assert len(set(segments.values())) == 3
    labels = segmenter.labels()
    for kind, segment in segments.items():
        assert labels[segment] == kind
    centroid = segmenter.centroid(segments["big spenders, rare"])
    assert 250 < centroid["spend_per_order"] < 600 and centroid["orders_per_week"] < 0.3
    shares = {summary.segment: summary.share for summary in segmenter.summaries()}
    assert all(0.25 < share < 0.42 for share in shares.values())


def test_shoppers_who_search_get_a_segment_of_their_own() -> None:
    """Verify that customers who buy like the frequent small baskets but look products up
    (a search every other view), where the others hardly search, are told apart, and the
    labels say how."""
    rng = random.Random(2)
    segmenter = Segmenter(refit_every=300, seed=1)
    kinds = [*ARCHETYPES, "searchers"]

    def customer(kind: str) -> dict[str, float]:
        searcher = kind == "searchers"
        profile = make_profile("frequent small baskets" if searcher else kind, rng)
        per_visit = (3.0 if searcher else 0.1) * rng.uniform(0.8, 1.25)
        profile["searches"] = round(int(profile["active_days"]) * per_visit)
        return behaviour_vector(profile)

    for i in range(800):
        segmenter.learn(f"c{i}", customer(kinds[i % 4]))
    segmenter.refit(choose_k=True)  # on everyone seen: when choices fall is not tested here
    truth = [i % 4 for i in range(400)]
    served = [segmenter.assign(customer(kinds[i % 4])) for i in range(400)]
    assert adjusted_rand_score(truth, served) > 0.9
    searchers, wanderers = served[3], served[0]
    assert "(more searches)" in segmenter.labels()[searchers]
    assert "(fewer searches)" in segmenter.labels()[wanderers]


def test_customers_who_bought_on_one_day_only_are_read_as_one_time_buyers() -> None:
    """Verify that on a shop of purchases only, where most customers bought on one day (as
    on CDNOW), the one-time buyers are described as such, not as buying more often than
    the repeat buyers: with a single day there is no rhythm to measure yet. Some repeat
    buyers bought twice within a fortnight (as on CDNOW), so the typical repeat pace that
    the segmenter fills in for one-day buyers reads "regular"."""
    rng = random.Random(3)
    segmenter = Segmenter(refit_every=300, seed=1)

    def customer(repeat: bool, quick: bool | None = None) -> dict[str, float]:
        quick = repeat and rng.random() < 0.5 if quick is None else quick
        orders = 2 if quick else rng.randint(3, 8) if repeat else 1
        span_days = rng.uniform(5, 14) if quick else rng.uniform(80, 250) if repeat else 0.0
        last = NOW - rng.uniform(0, 100) * DAY_MS
        return behaviour_vector({
            "orders": orders, "revenue": orders * rng.lognormvariate(3.3, 0.5),
            "active_days": orders, "first_seen_at": last - span_days * DAY_MS,
            "last_seen_at": last})

    for i in range(900):
        segmenter.learn(f"c{i}", customer(repeat=i % 5 < 2))
    segmenter.refit(choose_k=True)
    labels = segmenter.labels()
    once = [labels[segmenter.assign(customer(repeat=False))] for _ in range(200)]
    assert not any(label.startswith(("frequent", "regular")) for label in once), once
    assert sum("one-time" in label for label in once) >= 0.9 * len(once), once
    steady = [labels[segmenter.assign(customer(repeat=True, quick=False))] for _ in range(200)]
    assert sum("one-time" in label for label in steady) <= 0.4 * len(steady), steady


def test_segmenting_imports_no_clustering_library_on_the_way() -> None:
    """Verify that fitting, choosing the number of segments and refining them import
    nothing: scikit-learn's clustering took about a second to import, paid by the batch of
    the first refit (River imports scikit-learn's base at start-up, not its clustering)."""
    script = (
        "import random, sys\n"
        "from online_models.segments import Segmenter\n"
        "loaded = set(sys.modules)\n"
        "rng = random.Random(1)\n"
        "segmenter = Segmenter(min_customers=30, refit_every=100)\n"
        "for i in range(400):\n"
        "    big = i % 2\n"
        "    segmenter.learn(f'c{i % 200}', {'log_orders_per_week': rng.gauss(0.2 + big, 0.1),\n"
        "                                   'log_spend_per_order': rng.gauss(3 + 3 * big, 0.2)})\n"
        "assert segmenter.refits >= 4 and len(segmenter.centres) == 2, segmenter.refits\n"
        "print(sorted(set(sys.modules) - loaded))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "[]"


def test_a_segment_keeps_its_id_and_label_while_its_centre_moves() -> None:
    """Verify that refits on a changing population match the new centres to the old ids."""
    segmenter = trained_segmenter()
    before = assigned(segmenter, random.Random(7))
    labels_before = dict(segmenter.labels())
    rng = random.Random(9)
    kinds = list(ARCHETYPES)
    for i in range(1500):  # everyone spends 30% more, refitted five times
        kind = kinds[i % len(kinds)]
        segmenter.learn(f"{kind}-{i % 600}", behaviour_vector(
            make_profile(kind, rng, spend_factor=1.3)))
    assert segmenter.refits >= 5
    after = assigned(segmenter, random.Random(7), spend_factor=1.3)
    assert after == before
    assert segmenter.labels() == labels_before


def test_a_new_kind_of_customer_gets_a_new_id_and_the_others_keep_theirs() -> None:
    """Verify that a segment appearing later takes a fresh id."""
    segmenter = trained_segmenter(customers=300)
    before = assigned(segmenter, random.Random(7))
    ARCHETYPES["daily big spenders"] = (5.0, 300.0, 5, 1.5)
    try:
        rng = random.Random(11)
        for i in range(1200):
            kind = list(ARCHETYPES)[i % 4]
            segmenter.learn(f"{kind}-{i}", behaviour_vector(make_profile(kind, rng)))
        segmenter.refit(choose_k=True)
        after = assigned(segmenter, random.Random(7))
        assert {kind: after[kind] for kind in before} == before
        assert after["daily big spenders"] not in before.values()
    finally:
        del ARCHETYPES["daily big spenders"]


class ChoiceRecordingSegmenter(Segmenter):
    """A segmenter that notes the refit count at each choice of the number of segments."""

    def __init__(self, **options: int) -> None:
        super().__init__(**options)
        self.chosen_at: list[int] = []

    def _choose_k(self, z: np.ndarray, distinct: int) -> int:
        self.chosen_at.append(self.refits)
        return super()._choose_k(z, distinct)


def test_the_number_of_segments_is_chosen_less_often_while_it_holds() -> None:
    """Verify that each choice keeping the number doubles the refits to the next (up to
    eight times ``choose_k_every``), and a new number brings back the short interval."""
    segmenter = ChoiceRecordingSegmenter(refit_every=100, choose_k_every=5, seed=1)
    rng = random.Random(0)

    def learn_until(refits: int, kinds: list[str]) -> None:
        i = 0
        while segmenter.refits < refits:
            kind = kinds[i % len(kinds)]
            segmenter.learn(f"{kind}-{i % 300}", behaviour_vector(make_profile(kind, rng)))
            i += 1

    learn_until(80, list(ARCHETYPES))
    assert segmenter.chosen_at == [0, 5, 15, 35, 75]  # intervals 5, 10, 20, 40, 40
    assert len(segmenter.centres) == 3
    ARCHETYPES["daily big spenders"] = (5.0, 300.0, 5, 1.5)
    try:
        learn_until(125, list(ARCHETYPES))
    finally:
        del ARCHETYPES["daily big spenders"]
    assert len(segmenter.centres) == 4
    assert segmenter.chosen_at[5:] == [115, 120]  # the new number: 5 refits to the next


def test_a_segmenter_from_before_the_backoff_keeps_its_schedule() -> None:
    """Verify that a checkpointed segmenter without the choice schedule chooses at the next
    multiple of ``choose_k_every``, as it would have, and then backs off."""
    segmenter = ChoiceRecordingSegmenter(refit_every=100, choose_k_every=5, seed=1)
    rng = random.Random(0)
    kinds = list(ARCHETYPES)
    for i in range(700):
        segmenter.learn(f"{kinds[i % 3]}-{i % 300}", behaviour_vector(
            make_profile(kinds[i % 3], rng)))
    older = pickle.loads(pickle.dumps(segmenter))
    del older.choice_interval, older._next_choice
    older.refits, older.chosen_at = 7, []
    for _ in range(9):
        older.refit()
    assert older.chosen_at == [10]
    assert older.choice_interval == 10


def test_a_busy_customer_counts_once() -> None:
    """Verify that one customer's many updates weigh as one customer."""
    segmenter = trained_segmenter()
    rng = random.Random(3)
    for _ in range(3000):
        segmenter.learn("the-busy-one", behaviour_vector(make_profile("browsers", rng)))
    shares = [summary.share for summary in segmenter.summaries()]
    assert max(shares) < 0.42


def test_a_customer_is_assigned_by_the_centres_of_the_last_refit() -> None:
    """Verify that after refits that refine the centres (keeping their ids) while the shop's
    mix of customers changes, a customer goes to the nearest of today's centres, not of
    those the first assignment saw. Customers between two kinds tell them apart."""
    rng = random.Random(0)
    segmenter = Segmenter(refit_every=300, choose_k_every=100, seed=1)  # no choice again
    kinds = list(ARCHETYPES)
    for i in range(600):
        kind = kinds[i % len(kinds)]
        segmenter.learn(f"{kind}-{i}", behaviour_vector(make_profile(kind, rng)))

    def between() -> dict[str, float]:
        one, other = (behaviour_vector(make_profile(kind, rng)) for kind in rng.sample(kinds, 2))
        weight = rng.random()
        return {name: weight * one[name] + (1 - weight) * other[name]
                for name in one if name in other}

    probes = [between() for _ in range(200)]
    for vector in probes:
        segmenter.assign(vector)
    ids, refits = list(segmenter.centres), segmenter.refits
    for i in range(2400):  # four in five new customers are of one kind
        kind = kinds[0] if i % 5 else kinds[1 + i % 2]
        segmenter.learn(f"new-{i}", behaviour_vector(make_profile(kind, rng)))
    assert list(segmenter.centres) == ids and segmenter.refits >= refits + 5

    def nearest_now(vector: dict[str, float]) -> int:
        raw = np.array([vector.get(name, math.nan) for name in FEATURES])
        z = (np.where(np.isnan(raw), segmenter._fill, raw) - segmenter._means) / segmenter._scales
        return min(segmenter.centres,
                   key=lambda segment: float(((segmenter.centres[segment] - z) ** 2).sum()))

    assert [segmenter.assign(v) for v in probes] == [nearest_now(v) for v in probes]


def test_segment_assignment_is_pure_and_survives_a_restart() -> None:
    """Verify that assign() learns nothing and a pickled segmenter assigns the same, under
    the same identity (another worker's segmenter has its own)."""
    segmenter = trained_segmenter()
    vector = behaviour_vector(make_profile("browsers", random.Random(5)))
    examples = segmenter.example_count
    segment = segmenter.assign(vector)
    assert segmenter.example_count == examples
    restored = pickle.loads(pickle.dumps(segmenter))
    assert restored.assign(vector) == segment
    assert restored.labels() == segmenter.labels()
    assert restored.identity == segmenter.identity != Segmenter().identity
    older = pickle.loads(pickle.dumps(segmenter))
    del older.identity  # saved before segmenters had one
    assert pickle.loads(pickle.dumps(older)).identity


def test_a_worker_that_takes_another_workers_fit_serves_its_segments_and_keeps_them() -> None:
    """Verify that a segmenter which takes another worker's fit (through JSON, as Redis
    carries it) assigns every customer the same segment, label and identity; that it does
    not refit while the other worker fits, however much it learns; and that once it fits
    (taking over), its refits keep the segments' ids and the identity."""
    owner = trained_segmenter()
    other = Segmenter(refit_every=300, seed=1)
    other.fitting = False
    rng = random.Random(7)
    kinds = list(ARCHETYPES)
    for i in range(900):
        other.learn(f"theirs-{i}", behaviour_vector(make_profile(kinds[i % 3], rng)))
    assert other.centres == {} and other.refits == 0, "no fit of its own"
    assert other.adopt(json.loads(json.dumps(owner.fit_state())))
    customers = [behaviour_vector(make_profile(kinds[i % 3], rng)) for i in range(300)]
    assert [other.assign(v) for v in customers] == [owner.assign(v) for v in customers]
    assert other.labels() == owner.labels() and other.fit_version == owner.fit_version
    served = assigned(other, random.Random(3))
    other.fitting = True  # the owner stopped: this worker fits from here
    for i in range(900, 1500):
        other.learn(f"theirs-{i}", behaviour_vector(make_profile(kinds[i % 3], rng)))
    assert other.refits > owner.refits and other.identity == owner.identity
    assert assigned(other, random.Random(3)) == served
    stale = owner.fit_state() | {"features": ["orders_per_week"]}  # another release's
    assert not Segmenter().adopt(stale)


def test_a_segmenter_saved_with_other_features_starts_again_with_its_options() -> None:
    """Verify that a checkpoint from before the behaviour vector changed (no ``features``,
    shorter rows) restores as an empty segmenter with the same options, which learns again,
    instead of failing on its first refit or assigning in the wrong features."""
    segmenter = Segmenter(refit_every=300, min_customers=40, seed=7)
    rng = random.Random(0)
    kinds = list(ARCHETYPES)
    for i in range(600):
        segmenter.learn(f"{kinds[i % 3]}-{i}", behaviour_vector(make_profile(kinds[i % 3], rng)))
    older = pickle.loads(pickle.dumps(segmenter))
    del older.features
    older._sample = {c: row[:-1] for c, row in older._sample.items()}
    restored = pickle.loads(pickle.dumps(older))
    assert restored.centres == {} and restored._sample == {} and restored.example_count == 0
    assert (restored.refit_every, restored.min_customers, restored.seed) == (300, 40, 7)
    vector = behaviour_vector(make_profile("browsers", rng))
    assert restored.assign(vector) is None
    for i in range(600):
        restored.learn(f"{kinds[i % 3]}-{i}", behaviour_vector(make_profile(kinds[i % 3], rng)))
    assert len(restored.centres) == 3
    assert pickle.loads(pickle.dumps(restored)).assign(vector) == restored.assign(vector)


def test_an_erased_customer_leaves_the_sample() -> None:
    """Verify that forget() drops the customer from what later refits see."""
    segmenter = trained_segmenter()
    assert "browsers-2" in segmenter._sample
    segmenter.forget("browsers-2")
    assert "browsers-2" not in segmenter._sample
    segmenter.refit()


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


@pytest.mark.parametrize("groups", [2, 3, 5])
def test_screening_the_numbers_of_segments_chooses_what_trying_all_pairs_chooses(
        groups: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(groups)
    centres = rng.normal(0.0, 2.0, (groups, len(FEATURES)))
    points = np.vstack([rng.normal(centre, 1.0, (400 // groups, len(FEATURES)))
                        for centre in centres])
    screened = Segmenter(seed=3)._choose_k(points, len(points))
    monkeypatch.setattr(segments, "SCREEN_PAIRS", segments.CHOOSE_PAIRS)
    assert Segmenter(seed=3)._choose_k(points, len(points)) == screened


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=300))
def test_the_adjusted_rand_index_is_scikit_learns(pairs: list[tuple[int, int]]) -> None:
    """Verify that the choice's adjusted Rand index equals scikit-learn's on any two
    labelings, the degenerate ones included (one cluster, all singletons, one label)."""
    first, second = (np.array(labels) for labels in zip(*pairs, strict=True))
    assert adjusted_rand(first, second) == pytest.approx(adjusted_rand_score(first, second),
                                                         abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(groups=st.integers(1, 6), k=st.integers(2, 8), seed=st.integers(0, 1000),
       iterations=st.integers(2, 40))
def test_a_fit_stopped_at_its_fixed_point_is_the_fit_with_every_iteration(
        groups: int, k: int, seed: int, iterations: int) -> None:
    """Verify that stopping Lloyd's iterations at a fixed point answers what SciPy's
    ``kmeans2`` answers after all of them, from the same k-means++ seeds."""
    import warnings

    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, (groups, 3))
    points = np.vstack([rng.normal(centre, 1.0, (60, 3)) for centre in centres])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty centre
        every, _ = kmeans2(points, k, iter=iterations, minit="++", rng=seed)
    stopped = segments._seeded(points, k, seed=seed, iterations=iterations)
    np.testing.assert_allclose(stopped, every)
