"""Revenue forecasts per tenant and per category, hourly and daily, in event time.

Purchases are summed into buckets (UTC hours and days) per series: a tenant's whole revenue
(category ``"all"``) and each category's. A bucket closes when the watermark passes its end,
never by the wall clock, so replaying a stream gives the same buckets and forecasts. Each
closed bucket is scored against the forecast served for it, then learnt by the series'
:class:`~online_models.seasonal.SeasonalForecaster` (a daily cycle for hours, a weekly one for
days). A bucket with no purchase is a zero, learnt like any other.

Each worker sees only its partitions' purchases: its forecasts are of its share of a tenant's
revenue, as every global model here is per worker until models are merged across workers.
Amounts are summed as given: a tenant is assumed to sell in one currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from online_models.features import DAY_MS
from online_models.seasonal import SeasonalForecaster

__all__ = ["ALL_CATEGORIES", "GRANULARITIES", "ClosedBucket", "ForecastPoint", "Granularity",
           "RevenueForecast", "RevenueForecaster"]

HOUR_MS = 3_600_000
#: The category name of a tenant's whole revenue.
ALL_CATEGORIES = "all"

GranularityName = Literal["hour", "day"]


@dataclass(frozen=True)
class Granularity:
    """A bucket size and the season of its series (buckets per cycle)."""

    name: GranularityName
    size_ms: int
    seasonality: int


GRANULARITIES: dict[str, Granularity] = {
    "hour": Granularity("hour", HOUR_MS, 24),
    "day": Granularity("day", DAY_MS, 7),
}


@dataclass(frozen=True)
class ClosedBucket:
    """A bucket the watermark passed: its revenue beside the forecast served for it before.

    ``forecast``, ``lower`` and ``upper`` are ``None`` while the series warms up;
    ``scaled_error`` is the absolute error over the series' seasonal-naive error so far (as
    in MASE: unitless, comparable across shops, the error stream drift detection watches).
    """

    tenant: str
    category: str
    granularity: GranularityName
    start_ms: int
    end_ms: int
    revenue: float
    forecast: float | None
    lower: float | None
    upper: float | None
    scaled_error: float | None


@dataclass(frozen=True)
class ForecastPoint:
    start_ms: int
    revenue: float
    lower: float
    upper: float


@dataclass(frozen=True)
class RevenueForecast:
    """The next ``horizon`` buckets of one series after ``as_of_ms`` (the end of its last
    closed bucket), with ``interval_level`` prediction intervals and the series' own
    progressive one-step metrics. ``points`` is empty while ``status`` is ``warming_up``."""

    tenant: str
    category: str
    granularity: GranularityName
    as_of_ms: int
    status: Literal["ready", "warming_up"]
    buckets_learnt: int
    interval_level: float
    points: tuple[ForecastPoint, ...]
    mape: float | None
    mase: float | None
    coverage: float | None
    model_version: str


@dataclass
class _Series:
    model: SeasonalForecaster
    next_start_ms: int  # the next bucket to close
    open_buckets: dict[int, float]


class RevenueForecaster:
    """Per (tenant, category, granularity) revenue series, learnt as buckets close.

    Parameters
    ----------
    max_categories
        Categories forecast per tenant; purchases in further categories count only towards
        the tenant's whole revenue (bounded memory whatever shops send).
    max_gap_days
        A series the watermark passes by more than this with nothing open restarts from the
        watermark with a fresh model, instead of learning every empty bucket in between.
    interval_level
        Nominal coverage of the prediction intervals.
    max_horizon
        Longest forecast, in buckets.
    forecaster_options
        Keyword arguments of each series' :class:`SeasonalForecaster` (besides its
        ``seasonality``).

    Attributes
    ----------
    series
        ``(tenant, category, granularity) -> `` the series' state.
    example_count
        Buckets learnt, over all series.
    late_purchases
        Purchases whose bucket had already closed (not counted in any forecast).
    overflow_purchases
        Purchases of categories past ``max_categories`` (counted in ``"all"`` only).
    restarts
        Series restarted after a gap longer than ``max_gap_days``.

    Examples
    --------
    A shop selling 300 on two days of the week and 100 on the others, one purchase at noon
    each day, for 16 weeks; the watermark follows the purchases. The forecast starts with
    the open day, a busy one:

    >>> day = 86_400_000
    >>> forecaster = RevenueForecaster()
    >>> for d in range(16 * 7):
    ...     amount = 300.0 if d % 7 in (5, 6) else 100.0
    ...     _ = forecaster.observe_purchase("shop", d * day + day // 2, amount, {"books": amount})
    ...     closed = forecaster.advance_watermark(d * day + day // 2)
    >>> [(b.category, b.granularity, b.revenue) for b in closed if b.granularity == "day"]
    [('all', 'day', 300.0), ('books', 'day', 300.0)]
    >>> week = forecaster.forecast("shop", "day", horizon=7)
    >>> week.status, [round(p.revenue) for p in week.points]
    ('ready', [296, 94, 94, 95, 98, 102, 301])
    >>> [(round(p.lower), round(p.upper)) for p in week.points[:2]]
    [(278, 314), (75, 114)]
    >>> forecaster.forecast("shop", "day", horizon=1, category="toys") is None
    True
    """

    def __init__(
        self,
        *,
        max_categories: int = 50,
        max_gap_days: float = 28.0,
        interval_level: float = 0.9,
        max_horizon: int = 400,
        forecaster_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.max_categories = max_categories
        self.max_gap_days = max_gap_days
        self.interval_level = interval_level
        self.max_horizon = max_horizon
        self.forecaster_options = dict(forecaster_options or {})
        self.series: dict[tuple[str, str, str], _Series] = {}
        self._categories: dict[str, set[str]] = {}
        self._next_close_ms: int | None = None
        self.example_count = 0
        self.late_purchases = 0
        self.overflow_purchases = 0
        self.restarts = 0

    @property
    def model_version(self) -> str:
        return f"forecast-v1+{self.example_count}"

    def _new_model(self, granularity: Granularity) -> SeasonalForecaster:
        return SeasonalForecaster(seasonality=granularity.seasonality,
                                  interval_level=self.interval_level, **self.forecaster_options)

    def observe_purchase(self, tenant: str, at_ms: int, total: float,
                         category_totals: Mapping[str, float] | None = None) -> bool:
        """Add a purchase of ``total`` at event time ``at_ms`` (``category_totals``: its
        amount per category) to its open buckets. Returns ``False``, counting nothing, if
        its hour had already closed (a purchase behind the watermark), so hours, days and
        categories always add up alike."""
        for granularity in GRANULARITIES.values():
            whole = self.series.get((tenant, ALL_CATEGORIES, granularity.name))
            if whole is not None and at_ms - at_ms % granularity.size_ms < whole.next_start_ms:
                self.late_purchases += 1
                return False
        categories = self._categories.setdefault(tenant, set())
        counted = [(ALL_CATEGORIES, total)]
        for category, amount in (category_totals or {}).items():
            if category in categories or len(categories) < self.max_categories:
                categories.add(category)
                counted.append((category, amount))
            else:
                self.overflow_purchases += 1
        for granularity in GRANULARITIES.values():
            start = at_ms - at_ms % granularity.size_ms
            for category, amount in counted:
                key = (tenant, category, granularity.name)
                series = self.series.get(key)
                if series is None:
                    series = self.series[key] = _Series(self._new_model(granularity), start, {})
                    self._schedule(start + granularity.size_ms)
                series.open_buckets[start] = series.open_buckets.get(start, 0.0) + amount
        return True

    def _schedule(self, close_ms: int) -> None:
        if self._next_close_ms is None or close_ms < self._next_close_ms:
            self._next_close_ms = close_ms

    def advance_watermark(self, watermark_ms: int) -> list[ClosedBucket]:
        """Close every bucket that ends at or before ``watermark_ms``: score the forecast
        served for it, learn it. Returns them, oldest first per series."""
        if self._next_close_ms is None or watermark_ms < self._next_close_ms:
            return []
        closed: list[ClosedBucket] = []
        next_close: int | None = None
        max_gap_ms = int(self.max_gap_days * DAY_MS)
        for (tenant, category, name), series in self.series.items():
            granularity = GRANULARITIES[name]
            size = granularity.size_ms
            if (watermark_ms - series.next_start_ms > max_gap_ms
                    and not series.open_buckets):
                series.model = self._new_model(granularity)
                series.next_start_ms = watermark_ms - watermark_ms % size
                self.restarts += 1
            while series.next_start_ms + size <= watermark_ms:
                start = series.next_start_ms
                revenue = series.open_buckets.pop(start, 0.0)
                scale = series.model.scale
                served = series.model.learn_one(revenue)
                self.example_count += 1
                series.next_start_ms = start + size
                closed.append(ClosedBucket(
                    tenant=tenant, category=category, granularity=granularity.name,
                    start_ms=start,
                    end_ms=start + size, revenue=revenue,
                    forecast=served.value if served else None,
                    lower=served.lower if served else None,
                    upper=served.upper if served else None,
                    scaled_error=(abs(revenue - served.value) / scale
                                  if served is not None and scale else None)))
            close = series.next_start_ms + size
            next_close = close if next_close is None else min(next_close, close)
        self._next_close_ms = next_close
        return closed

    def forecast(self, tenant: str, granularity: str, horizon: int,
                 category: str = ALL_CATEGORIES) -> RevenueForecast | None:
        """The next ``horizon`` buckets of a series (pure), or ``None`` if it has none."""
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {sorted(GRANULARITIES)}")
        if not 1 <= horizon <= self.max_horizon:
            raise ValueError(f"horizon must be between 1 and {self.max_horizon}")
        series = self.series.get((tenant, category, granularity))
        if series is None:
            return None
        size = GRANULARITIES[granularity].size_ms
        model = series.model
        points = (
            tuple(ForecastPoint(series.next_start_ms + i * size, p.value, p.lower, p.upper)
                  for i, p in enumerate(model.forecast(horizon)))
            if model.ready else ())
        metrics = model.metrics()
        return RevenueForecast(
            tenant=tenant, category=category, granularity=GRANULARITIES[granularity].name,
            as_of_ms=series.next_start_ms, status="ready" if model.ready else "warming_up",
            buckets_learnt=model.observations, interval_level=self.interval_level,
            points=points, mape=metrics["mape"], mase=metrics["mase"],
            coverage=metrics["coverage"], model_version=self.model_version)

    def series_of(self, tenant: str) -> list[tuple[str, str]]:
        """``(category, granularity)`` of every series of ``tenant``, sorted."""
        return sorted((category, name) for (t, category, name) in self.series if t == tenant)

    def metrics_dict(self) -> dict[str, object]:
        """Progressive one-step metrics per granularity, pooled over every series (each bucket
        scored before it was learnt, once its series served forecasts)."""
        out: dict[str, object] = {"model_version": self.model_version,
                                  "examples": self.example_count, "series": len(self.series),
                                  "late_purchases": self.late_purchases}
        for name in GRANULARITIES:
            models = [s.model for (_, _, g), s in self.series.items() if g == name]
            scored = sum(m.scored for m in models)
            percentage_scored = sum(m.percentage_scored for m in models)
            scale_scored = sum(m.scale_scored for m in models)
            out[f"{name}_scored"] = scored
            out[f"{name}_mape"] = (100.0 * sum(m.percentage_error for m in models)
                                   / percentage_scored if percentage_scored else None)
            out[f"{name}_mase"] = (sum(m.scaled_error for m in models) / scale_scored
                                   if scale_scored else None)
            out[f"{name}_coverage"] = (sum(m.covered for m in models) / scored
                                       if scored else None)
        return out
