"""Recommendations: cold start, exclusions, progressive hit rate."""

from __future__ import annotations

import pickle
import random

from online_models.recommend import Recommender

DAY = 86_400_000


def shop(recommender: Recommender, customers: int = 200, seed: int = 0,
         interactions: int = 6) -> None:
    """Two tastes: even customers buy from items a*, odd ones from items b*; a* are more popular.

    ``interactions`` per customer on average."""
    rng = random.Random(seed)
    for step in range(customers * interactions):
        cid = f"c{rng.randrange(customers)}"
        taste = "a" if int(cid[1:]) % 2 == 0 else "b"
        item = f"{taste}{rng.randrange(10)}"
        recommender.learn(
            cid, item, rng.choice(["product_view", "add_to_cart", "purchase"]), step * 60_000
        )


def test_unknown_customer_falls_back_to_trending() -> None:
    """Verify that a customer the model never saw gets trending items, marked as such."""
    recommender = Recommender()
    shop(recommender)
    recommendations = recommender.top_n("stranger", 5)
    assert len(recommendations) == 5
    assert {source for _, _, source in recommendations} == {"trending"}
    assert [item for item, _, _ in recommendations] == [
        item for item, _ in recommender.trending.top(5)
    ]
    assert "stranger" not in recommender.mf.u_latents  # scoring created no state


def test_recently_decayed_popularity_ranks_new_hits_first() -> None:
    """Verify that trending popularity decays in event time."""
    recommender = Recommender(trending_halflife_days=1)
    for i in range(10):
        recommender.learn(f"c{i}", "old-hit", "purchase", at_ms=0)
    for i in range(3):
        recommender.learn(f"d{i}", "new-hit", "purchase", at_ms=10 * DAY)
    assert recommender.top_n("stranger", 1)[0][0] == "new-hit"


def test_excluded_items_are_never_recommended() -> None:
    """Verify that already-bought items (exclude) never appear, for any source."""
    recommender = Recommender()
    shop(recommender)
    bought = {f"a{i}" for i in range(5)}
    for customer in ("c0", "c1", "stranger"):
        items = {
            item for item, _, _ in recommender.top_n(customer, 10, exclude=bought, recent=["a0"])
        }
        assert not items & bought


def test_known_customer_gets_collaborative_recommendations_of_their_taste() -> None:
    """Verify that collaborative filtering learns a customer's taste (from 20 interactions
    each: the small SGD step learns from more than a customer's last few)."""
    recommender = Recommender(seed=3)
    shop(recommender, customers=100, interactions=20)
    top = recommender.top_n("c1", 5)
    assert {source for _, _, source in top} <= {"collaborative", "bought_together"}
    assert sum(item.startswith("b") for item, _, _ in top) >= 4


def test_bought_together_seeds_from_recent_products() -> None:
    """Verify that co-occurrence recommends what is bought with the recent products (here a
    tent the stranger bought: a served list leaves out what was bought)."""
    recommender = Recommender()
    for i in range(20):
        recommender.learn(f"c{i}", "tent", "purchase", i * 1000)
        recommender.learn(f"c{i}", "stove", "purchase", i * 1000 + 1, recent=["tent"])
    for i in range(50):
        recommender.learn(f"p{i}", "popular", "purchase", 100_000 + i)
    assert recommender.top_n("stranger", 1, recent=["tent"], exclude={"tent"})[0][::2] == (
        "stove", "bought_together")


def test_what_a_customer_keeps_looking_at_comes_first() -> None:
    """Verify that a customer's recently viewed products, not bought yet, lead their list,
    for a known customer as for a stranger (whose list has nothing else to go by, so the
    most recent comes first)."""
    recommender = Recommender()
    for i in range(50):
        recommender.learn(f"p{i}", "popular", "purchase", i)
    for kind in ("view", "view", "cart"):
        recommender.learn("known", "kettle", kind, 100, recent=["kettle"])
    for customer in ("known", "stranger"):
        listed = recommender.top_n(customer, 3, recent=["kettle", "teapot", "popular"],
                                   exclude={"popular"})
        assert [item for item, _, _ in listed[:2]] == ["kettle", "teapot"]
        assert listed[0][2] == "recently_viewed"
    stranger = recommender.top_n("stranger", 2, recent=["teapot", "kettle"])
    assert [(item, source) for item, _, source in stranger] == [
        ("teapot", "recently_viewed"), ("kettle", "recently_viewed")]


def test_how_often_a_customer_looked_outweighs_what_they_looked_at_last() -> None:
    """Verify that among a known customer's recent products the one they viewed again and
    again and carted leads the one they glanced at last (the recency rank alone put the
    glance first), for a customer with collaborative scores as for a new one."""
    for views in (4, 1):  # 4 + cart + glance: collaborative; 1 + cart + glance: not yet
        recommender = Recommender()
        for i in range(50):
            recommender.learn(f"p{i}", "popular", "purchase", i)
        for _ in range(views):
            recommender.learn("c", "lamp", "view", 100, recent=["lamp"])
        recommender.learn("c", "lamp", "cart", 200, recent=["lamp"])
        recommender.learn("c", "mug", "view", 300, recent=["mug", "lamp"])
        listed = recommender.top_n("c", 2, recent=["mug", "lamp"], exclude={"popular"})
        assert [item for item, _, _ in listed] == ["lamp", "mug"]
        assert listed[0][2] == "recently_viewed"
        assert listed[0][1] > listed[1][1]


def test_a_stitched_visitors_products_count_as_viewed_once() -> None:
    """Verify that a recent product the recommender saw no interaction of (a visitor's,
    merged into the customer) still gets a bonus, as one view would."""
    recommender = Recommender()
    for _ in range(2):  # fewer than min_user_events: the scores are the bonuses alone
        recommender.learn("c", "lamp", "view", 100, recent=["lamp"])
    assert recommender.interest["c"] == {"lamp": 2.0}
    assert recommender.top_n("c", 2, recent=["vase", "lamp"]) == [
        ("lamp", 2.0, "recently_viewed"), ("vase", 1.0, "recently_viewed")]


def test_interest_is_bounded_and_forgotten() -> None:
    """Verify that a customer's interest keeps the strongest products only, and that
    forget() erases it with the customer's factors."""
    recommender = Recommender(interest_items=3)
    for i in range(10):
        recommender.learn("c", f"p{i}", "cart" if i < 2 else "view", i)
    assert len(recommender.interest["c"]) < 2 * 3
    assert {"p0", "p1"} <= set(recommender.interest["c"])
    recommender.forget("c")
    assert "c" not in recommender.interest
    assert "c" not in recommender.mf.u_latents


def test_a_checkpoint_from_before_interest_restores() -> None:
    """Verify that a recommender pickled before it kept interest restores and learns."""
    recommender = Recommender()
    recommender.learn("c", "lamp", "view", 0)
    del recommender.__dict__["interest"], recommender.__dict__["interest_items"]
    restored = pickle.loads(pickle.dumps(recommender))
    assert restored.interest == {} and restored.interest_items == 30
    restored.learn("c", "lamp", "view", 1)
    assert restored.interest == {"c": {"lamp": 1.0}}


def test_progressive_hit_rate_is_measured_before_learning_and_against_popularity() -> None:
    """Verify that each purchase is checked against the top-10 served before it was learnt."""
    recommender = Recommender()
    assert recommender.learn("c", "x", "purchase", 0) is False  # nothing known yet: a miss
    shop(recommender)
    metrics = recommender.metrics_dict()
    assert (
        metrics["purchases_evaluated"] == recommender.hit_rate.n == recommender.baseline_hit_rate.n
    )
    assert 0.0 < metrics["hit_rate_at_10"] <= 1.0
    assert metrics["lift_over_popularity"] is not None


def test_an_orders_products_are_each_judged_against_the_one_list_served_before_it() -> None:
    """Verify that every product of an order counts as a purchase evaluated, a hit exactly
    when it was in the top-10 served before the order, and is then learnt."""
    recommender = Recommender(seed=3)
    shop(recommender, customers=100)
    served = [item for item, _, _ in recommender.top_n("c1", 10, exclude={"b0"}, recent=["b1"])]
    unserved = next(f"b{i}" for i in range(10) if f"b{i}" not in served and f"b{i}" != "b0")
    evaluated, learnt = recommender.hit_rate.n, recommender.example_count

    hits = recommender.learn_order("c1", [served[0], unserved, served[-1]], 10 * DAY,
                                   recent=["b1"], exclude={"b0"})

    assert hits == [True, False, True]
    assert recommender.hit_rate.n == recommender.baseline_hit_rate.n == evaluated + 3
    assert recommender.example_count == learnt + 3


def test_full_catalogue_scoring_is_supported() -> None:
    """Verify that explicit candidates are all scored (used to score a whole catalogue)."""
    recommender = Recommender()
    shop(recommender)
    catalogue = [f"{t}{i}" for t in "ab" for i in range(10)] + [f"unseen{i}" for i in range(5)]
    top = recommender.top_n("c0", 25, candidates=catalogue)
    assert sorted(item for item, _, _ in top) == sorted(catalogue)
    assert not any(item.startswith("unseen") for item in recommender.mf.i_latents)
