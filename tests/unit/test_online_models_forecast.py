"""Revenue forecasts: buckets close in event time at the watermark, replays repeat, a cycle
is learnt with honest intervals, and the state checkpoints."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from online_models.features import DAY_MS
from online_models.forecast import HOUR_MS, RevenueForecaster
from online_models.seasonal import SeasonalForecaster, empirical_quantile


def hourly_shop(days: int, seed: int) -> list[tuple[int, float, str]]:
    """Purchases of a shop with a daily cycle (busy evenings, quiet nights): (time, amount,
    category), in event-time order."""
    rng = random.Random(seed)
    purchases = []
    for hour in range(days * 24):
        rate = 1.0 + 4.0 * math.exp(-((hour % 24 - 19) ** 2) / 8.0)  # orders per hour
        for _ in range(int(rng.expovariate(1.0 / rate) + 0.5)):
            at = hour * HOUR_MS + rng.randrange(HOUR_MS)
            purchases.append((at, round(rng.uniform(20, 80), 2), rng.choice(["books", "toys"])))
    return sorted(purchases)


def replay(purchases: list[tuple[int, float, str]], every: int = 1,
           forecaster: RevenueForecaster | None = None) -> RevenueForecaster:
    """Feed purchases, advancing the watermark to the latest event time every ``every``."""
    forecaster = forecaster or RevenueForecaster()
    for i, (at, amount, category) in enumerate(purchases):
        forecaster.observe_purchase("shop", at, amount, {category: amount})
        if i % every == 0:
            forecaster.advance_watermark(at)
    return forecaster


def test_buckets_close_at_the_watermark_not_before() -> None:
    """Verify that a bucket closes only once the watermark passes its end, that empty buckets
    close as zeros, and that a purchase behind the watermark is refused and counted."""
    forecaster = RevenueForecaster()
    assert forecaster.observe_purchase("shop", 10 * 60_000, 30.0, {"books": 30.0})
    assert forecaster.advance_watermark(HOUR_MS - 1) == []
    closed = forecaster.advance_watermark(3 * HOUR_MS)
    hourly_all = [(b.start_ms, b.revenue) for b in closed
                  if b.granularity == "hour" and b.category == "all"]
    assert hourly_all == [(0, 30.0), (HOUR_MS, 0.0), (2 * HOUR_MS, 0.0)]
    assert all(b.forecast is None for b in closed)  # warming up: nothing was served
    assert not forecaster.observe_purchase("shop", 2 * HOUR_MS + 5, 10.0, {"books": 10.0})
    assert forecaster.late_purchases == 1
    assert forecaster.observe_purchase("shop", 3 * HOUR_MS + 5, 10.0)
    # The late purchase counts nowhere: not in its still open day either.
    daily = forecaster.advance_watermark(DAY_MS)
    assert [(b.category, b.revenue) for b in daily if b.granularity == "day"] == [
        ("all", 40.0), ("books", 30.0)]


def test_replay_gives_the_same_forecasts_whatever_the_batching() -> None:
    """Verify that replaying the same purchases gives identical forecasts, whether the
    watermark moves after every purchase or after every fiftieth."""
    purchases = hourly_shop(days=30, seed=1)
    one = replay(purchases)
    again = replay(purchases)
    batched = replay(purchases, every=50)
    batched.advance_watermark(purchases[-1][0])
    for granularity, horizon in [("hour", 48), ("day", 7)]:
        reference = one.forecast("shop", granularity, horizon)
        assert reference is not None and reference.points
        assert again.forecast("shop", granularity, horizon) == reference
        assert batched.forecast("shop", granularity, horizon) == reference
    assert one.metrics_dict() == batched.metrics_dict()


def test_hourly_cycle_is_learnt_with_covering_intervals() -> None:
    """Verify that a daily cycle in hourly revenue is learnt: next day's forecast beats the
    seasonal-naive one (same hour yesterday) on the true expected revenue, and the one-step
    intervals cover about their nominal 90%."""
    purchases = hourly_shop(days=60, seed=2)
    forecaster = replay(purchases)
    forecast = forecaster.forecast("shop", "hour", 24)
    assert forecast is not None and forecast.status == "ready"
    expected = {h: 50.0 * (1.0 + 4.0 * math.exp(-((h - 19) ** 2) / 8.0)) for h in range(24)}
    ours = sum(abs(p.revenue - expected[p.start_ms // HOUR_MS % 24]) for p in forecast.points)
    first = forecast.points[0].start_ms
    yesterday = [sum(a for at, a, _ in purchases if at // HOUR_MS == first // HOUR_MS - 24 + i)
                 for i in range(24)]
    naive = sum(abs(yesterday[i] - expected[(first // HOUR_MS + i) % 24]) for i in range(24))
    assert ours < naive
    assert all(p.lower <= p.revenue <= p.upper for p in forecast.points)
    assert forecast.points[0].start_ms == forecast.as_of_ms
    assert 0.8 <= forecast.coverage <= 0.97
    metrics = forecaster.metrics_dict()
    assert metrics["hour_scored"] > 1000 and 0.8 <= metrics["hour_coverage"] <= 0.97
    assert metrics["day_mase"] is not None


def test_categories_are_series_of_their_own_and_bounded() -> None:
    """Verify per-category series beside the whole, and that categories past the limit count
    only towards the whole."""
    forecaster = RevenueForecaster(max_categories=2)
    for category in ["books", "toys", "games"]:
        forecaster.observe_purchase("shop", 0, 10.0, {category: 10.0})
    forecaster.observe_purchase("other-shop", 0, 99.0)
    assert forecaster.series_of("shop") == [("all", "day"), ("all", "hour"), ("books", "day"),
                                            ("books", "hour"), ("toys", "day"), ("toys", "hour")]
    assert forecaster.overflow_purchases == 1
    closed = forecaster.advance_watermark(DAY_MS)
    daily = {(b.tenant, b.category): b.revenue for b in closed if b.granularity == "day"}
    assert daily == {("shop", "all"): 30.0, ("shop", "books"): 10.0, ("shop", "toys"): 10.0,
                     ("other-shop", "all"): 99.0}


def test_a_long_silence_restarts_the_series() -> None:
    """Verify that a watermark far past a series' last bucket restarts it from the watermark
    instead of learning every empty bucket in between."""
    forecaster = RevenueForecaster(max_gap_days=7)
    forecaster.observe_purchase("shop", 0, 10.0)
    forecaster.advance_watermark(DAY_MS)
    assert forecaster.advance_watermark(365 * DAY_MS + 5 * HOUR_MS) == []
    assert forecaster.restarts == 2  # the hourly and the daily series
    forecast = forecaster.forecast("shop", "hour", 1)
    assert forecast is not None and forecast.buckets_learnt == 0
    assert forecast.as_of_ms == 365 * DAY_MS + 5 * HOUR_MS
    closed = forecaster.advance_watermark(365 * DAY_MS + 6 * HOUR_MS)
    assert [(b.granularity, b.revenue) for b in closed] == [("hour", 0.0)]


def test_bad_requests_are_refused_and_unknown_series_are_none() -> None:
    """Verify the forecast's argument checks and that an unknown series has no forecast."""
    forecaster = RevenueForecaster(max_horizon=100)
    forecaster.observe_purchase("shop", 0, 10.0)
    with pytest.raises(ValueError, match="granularity"):
        forecaster.forecast("shop", "week", 3)
    with pytest.raises(ValueError, match="horizon"):
        forecaster.forecast("shop", "day", 101)
    assert forecaster.forecast("nobody", "day", 3) is None
    warming = forecaster.forecast("shop", "day", 3)
    assert warming is not None and warming.status == "warming_up" and warming.points == ()


def test_checkpoint_restores_forecasts_and_learning() -> None:
    """Verify that a pickled forecaster forecasts and learns on exactly like the original."""
    purchases = hourly_shop(days=40, seed=3)
    original = replay(purchases[: len(purchases) // 2])
    restored = pickle.loads(pickle.dumps(original))
    assert restored.forecast("shop", "hour", 24) == original.forecast("shop", "hour", 24)
    replay(purchases[len(purchases) // 2:], forecaster=original)
    replay(purchases[len(purchases) // 2:], forecaster=restored)
    assert restored.forecast("shop", "day", 14) == original.forecast("shop", "day", 14)
    assert restored.metrics_dict() == original.metrics_dict()


def test_online_selection_follows_a_level_shift() -> None:
    """Verify that after a lasting drop in level the faster-smoothing candidates are served,
    so the forecast follows the new level within a couple of weeks."""
    rng = random.Random(4)
    model = SeasonalForecaster(seasonality=7)
    for day in range(200):
        level = 1000.0 if day < 150 else 300.0
        model.learn_one(level * (1.3 if day % 7 == 5 else 1.0) + rng.gauss(0, 30))
    week = model.forecast(7)
    assert 250 < sum(p.value for p in week) / 7 < 380  # the new level: 300, and 390 one day
    assert model.metrics()["alpha"] >= 0.2


def test_intervals_are_the_quantiles_of_the_served_candidates_residuals() -> None:
    """Verify that the intervals served bucket after bucket, while the served candidate
    changes (a level shift), are those of the candidate's residuals sorted afresh; and that
    a forecaster checkpointed before residuals were kept in order serves the same."""
    def afresh(model: SeasonalForecaster) -> tuple[float, float]:
        residuals = sorted(model.residuals[model.selected])
        return (empirical_quantile(residuals, 0.05), empirical_quantile(residuals, 0.95))

    rng = random.Random(8)
    model = SeasonalForecaster(seasonality=7)
    served, switches = [], set()
    for day in range(260):
        level = 1000.0 if day < 150 else 300.0
        if model.ready:
            point = model._one_step(model.selected)
            low, high = afresh(model)
            served.append((max(point, 0.0), max(min(point + low, point), 0.0),
                           max(point + high, point, 0.0)))
            switches.add(model.selected)
        prediction = model.learn_one(level * (1.3 if day % 7 == 5 else 1.0) + rng.gauss(0, 30))
        if prediction is not None:
            assert tuple(prediction) == pytest.approx(served[-1], abs=1e-9)
    assert len(switches) > 1  # the served candidate changed along the way
    older = pickle.loads(pickle.dumps(model))
    del older._sorted_index, older._sorted  # as a checkpoint written before this
    assert older.forecast(7) == model.forecast(7)


@pytest.mark.parametrize("first_week", [[0.0] * 7, [40.0, -40.0, 0.0, 0.0, 25.5, 0.0, -25.5]])
def test_a_first_season_without_net_revenue_starts_the_series_again(
        first_week: list[float]) -> None:
    """Verify that a first season whose values sum to nothing (no revenue, or values that
    cancel out) neither fails (River would divide by its mean) nor shapes the forecast: the
    weeks after it are learnt as a fresh series."""
    model, fresh = SeasonalForecaster(seasonality=7), SeasonalForecaster(seasonality=7)
    for value in first_week:
        assert model.learn_one(value) is None
    pattern = [100.0, 100.0, 100.0, 100.0, 120.0, 180.0, 200.0]
    for day in range(28):
        model.learn_one(pattern[day % 7])
        fresh.learn_one(pattern[day % 7])
    assert model.forecast(7) == fresh.forecast(7) != []
