"""Revenue forecasts judged offline: CDNOW's daily revenue, and a simulated shop's hours and
days, against a seasonal-naive baseline and an ARIMA fitted with statsmodels.

The subject is :class:`online_models.forecast.RevenueForecaster`, fed purchase events in
event-time order in this process (the worker's wiring is judged elsewhere, as served). It
learns online through the calibration period; then (a) its forecast from the end of
calibration is compared 4 and 13 weeks ahead, and (b) it goes on learning through the
holdout, each day's one-step forecast scored before that day is learnt (rolling).

Baselines, on the same data:

* **seasonal naive**: the same weekday last week (the same hour yesterday for hours);
* **statsmodels SARIMAX** fitted once on the calibration period, on ``log1p`` revenue (it is
  multiplicative), its orders chosen by AIC over a small grid (for hours, where a grid of
  fits with a 24-hour season takes too long, (1,0,1)x(1,0,1,24)); rolling one-step
  forecasts apply the fitted parameters to the holdout without refitting, and so do the
  forecasts from every origin;
* two River alternatives, for the choice of model: ``SNARIMAX`` (SGD on standardised
  values) and a single ``HoltWinters`` with River's own (linear-trend) forecast.

MAPE is over days with revenue (CDNOW has none without); MASE divides by the in-sample
mean absolute error of the seasonal-naive forecast over the calibration period.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from load_tests.quality.cdnow import CALIBRATION_END, HOLDOUT_END, load_transactions
from load_tests.report import (
    image,
    pyplot,
    reproduce_line,
    run_sentence,
    save_plot,
    table,
    title,
    write_report,
)
from online_models.forecast import ClosedBucket, RevenueForecaster
from simulator import ShopSimulator

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parents[1] / "results"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
EPOCH = pd.Timestamp("1970-01-01")
INTERVAL = 0.9


def to_ms(moment: pd.Timestamp) -> int:
    return int((moment - EPOCH) // pd.Timedelta(milliseconds=1))


@dataclass
class Scores:
    """MAPE (%), MASE and interval coverage of one method over one stretch."""

    mape: float
    mase: float
    coverage: float | None


def score(actual: np.ndarray, predicted: np.ndarray, scale: float,
          lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> Scores:
    """
    >>> s = score(np.array([10.0, 0.0, 20.0]), np.array([12.0, 1.0, 20.0]), scale=2.0,
    ...           lower=np.array([11.0, 0.0, 15.0]), upper=np.array([13.0, 2.0, 25.0]))
    >>> round(s.mape, 1), s.mase, round(s.coverage, 3)
    (10.0, 0.5, 0.667)
    """
    nonzero = actual != 0
    mape = float(100.0 * np.mean(np.abs(actual - predicted)[nonzero] / np.abs(actual[nonzero])))
    mase = float(np.mean(np.abs(actual - predicted)) / scale)
    coverage = (float(np.mean((lower <= actual) & (actual <= upper)))
                if lower is not None and upper is not None else None)
    return Scores(mape, mase, coverage)


@dataclass
class Forecasts:
    """One method's fixed-origin path (from the end of calibration) and rolling one-step
    forecasts over the holdout, each with intervals where the method gives them."""

    name: str
    path: np.ndarray
    rolling: np.ndarray
    path_interval: tuple[np.ndarray, np.ndarray] | None = None
    rolling_interval: tuple[np.ndarray, np.ndarray] | None = None
    #: Forecasts of ``Series.origin_horizon`` buckets from each of ``Series.origins``.
    origin_paths: list[np.ndarray] = field(default_factory=list)


@dataclass
class Series:
    """A revenue series split at the end of its calibration period."""

    name: str
    values: np.ndarray
    start: pd.Timestamp
    step: str  # "hour" or "day"
    calibration: int  # number of calibration buckets
    seasonality: int
    horizons: Sequence[tuple[str, int]]
    #: A further check that one origin is not luck: ``origin_horizon`` buckets ahead from
    #: every ``origin_every``-th bucket of the holdout (as far as the holdout reaches).
    origin_every: int
    origin_horizon: int
    methods: list[Forecasts] = field(default_factory=list)

    @property
    def origins(self) -> list[int]:
        return list(range(self.calibration, len(self.values) - self.origin_horizon + 1,
                          self.origin_every))

    @property
    def scale(self) -> float:
        cal = self.values[: self.calibration]
        m = self.seasonality
        return float(np.mean(np.abs(cal[m:] - cal[:-m])))

    @property
    def holdout(self) -> np.ndarray:
        return self.values[self.calibration:]


# ---------------------------------------------------------------------------------------
# Ours: the product's forecaster, fed purchase events in event-time order
# ---------------------------------------------------------------------------------------


def replay_ours(purchases: Sequence[tuple[int, float]], series: Series, tenant: str) -> Forecasts:
    """Feed ``(at_ms, amount)`` purchases to a :class:`RevenueForecaster`, the watermark at
    each purchase; take its forecast at the end of calibration, and its one-step forecasts
    of every holdout bucket as they close."""
    size = DAY_MS if series.step == "day" else HOUR_MS
    start_ms = to_ms(series.start)
    calibration_end_ms = start_ms + series.calibration * size
    end_ms = start_ms + len(series.values) * size
    forecaster = RevenueForecaster(interval_level=INTERVAL)
    longest = max(h for _, h in series.horizons)
    path = None
    closed: list[ClosedBucket] = []
    origins = [start_ms + t * size for t in series.origins]
    origin_paths = []
    for at_ms, amount in purchases:
        if path is None and at_ms >= calibration_end_ms:
            closed += forecaster.advance_watermark(calibration_end_ms)
            path = forecaster.forecast(tenant, series.step, longest)
        while origins and at_ms >= origins[0]:
            closed += forecaster.advance_watermark(origins.pop(0))
            at_origin = forecaster.forecast(tenant, series.step, series.origin_horizon)
            assert at_origin is not None
            origin_paths.append(np.array([p.revenue for p in at_origin.points]))
        forecaster.observe_purchase(tenant, at_ms, amount)
        closed += forecaster.advance_watermark(at_ms)
    for origin in origins:  # origins after the last purchase
        closed += forecaster.advance_watermark(origin)
        at_origin = forecaster.forecast(tenant, series.step, series.origin_horizon)
        assert at_origin is not None
        origin_paths.append(np.array([p.revenue for p in at_origin.points]))
    closed += forecaster.advance_watermark(end_ms)
    assert path is not None and path.points, "the forecaster was not ready at calibration end"
    rolling = [b for b in closed if b.granularity == series.step and b.tenant == tenant
               and calibration_end_ms <= b.start_ms < end_ms]
    assert len(rolling) == len(series.holdout) and all(b.forecast is not None for b in rolling)
    return Forecasts(
        name="ours: RevenueForecaster (River Holt-Winters, chosen online)",
        path=np.array([p.revenue for p in path.points]),
        path_interval=(np.array([p.lower for p in path.points]),
                       np.array([p.upper for p in path.points])),
        rolling=np.array([b.forecast for b in rolling]),
        rolling_interval=(np.array([b.lower for b in rolling]),
                          np.array([b.upper for b in rolling])),
        origin_paths=origin_paths)


# ---------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------


def seasonal_naive(series: Series) -> Forecasts:
    values, m, n = series.values, series.seasonality, series.calibration
    longest = max(h for _, h in series.horizons)
    path = np.array([values[n - m + (h % m)] for h in range(longest)])
    rolling = values[n - m: len(values) - m]
    label = "same hour yesterday" if series.step == "hour" else "same weekday last week"
    origin_paths = [np.array([values[t - m + (h % m)] for h in range(series.origin_horizon)])
                    for t in series.origins]
    return Forecasts(name=f"seasonal naive ({label})", path=path, rolling=rolling,
                     origin_paths=origin_paths)


def statsmodels_arima(series: Series, grid: bool = True) -> Forecasts:
    """SARIMAX on ``log1p`` revenue, orders by AIC (a small grid), fitted on calibration."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    m = series.seasonality
    calibration = np.log1p(series.values[: series.calibration])
    orders = (list(itertools.product(itertools.product([0, 1, 2], [0, 1], [0, 1, 2]),
                                     [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 1, 1)]))
              if grid else [((1, 0, 1), (1, 0, 1))])
    best: tuple[float, Any, Any, Any] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for order, seasonal in orders:
            trend = "c" if order[1] == 0 and seasonal[1] == 0 else "n"
            try:
                fitted = SARIMAX(calibration, order=order, seasonal_order=(*seasonal, m),
                                 trend=trend).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(fitted.aic) and (best is None or fitted.aic < best[0]):
                best = (fitted.aic, order, seasonal, fitted)
        assert best is not None
        _, order, seasonal, fitted = best
        longest = max(h for _, h in series.horizons)
        forecast = fitted.get_forecast(longest)
        low, high = np.asarray(forecast.conf_int(alpha=1 - INTERVAL)).T
        applied = fitted.apply(np.log1p(series.values))
        one_step = applied.get_prediction(start=series.calibration)
        one_low, one_high = np.asarray(one_step.conf_int(alpha=1 - INTERVAL)).T
        origin_paths = [
            np.asarray(fitted.apply(np.log1p(series.values[:t])).forecast(series.origin_horizon))
            for t in series.origins]

    def back(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.expm1(np.asarray(x)), 0.0)

    return Forecasts(
        name=(f"statsmodels SARIMAX{order}x{(*seasonal, m)} on log1p "
              f"({'AIC' if grid else 'fixed orders'})"),
        path=back(forecast.predicted_mean), path_interval=(back(low), back(high)),
        rolling=back(one_step.predicted_mean), rolling_interval=(back(one_low), back(one_high)),
        origin_paths=[back(p) for p in origin_paths])


def river_alternative(series: Series, name: str, make: Callable[[], Any],
                      log_scale: bool = False) -> Forecasts:
    """A River forecaster fed the series bucket by bucket (its own forecast method)."""
    values = series.values
    forward = np.log1p if log_scale else (lambda v: v)
    back = np.expm1 if log_scale else (lambda v: v)
    model = make()
    longest = max(h for _, h in series.horizons)
    rolling = []
    path = None
    origins = set(series.origins)
    origin_paths = []
    for t, y in enumerate(values):
        if t == series.calibration:
            path = np.maximum(back(np.array(model.forecast(longest), dtype=float)), 0.0)
        if t in origins:
            origin_paths.append(np.nan_to_num(np.maximum(back(np.array(
                model.forecast(series.origin_horizon), dtype=float)), 0.0), nan=1e300,
                posinf=1e300))
        if t >= series.calibration:
            rolling.append(max(float(back(model.forecast(1)[0])), 0.0))
        model.learn_one(float(forward(y)))
    assert path is not None
    # A diverged model forecasts inf or nan: scored as the largest finite float would be.
    return Forecasts(name=name, path=np.nan_to_num(path, nan=1e300, posinf=1e300),
                     rolling=np.nan_to_num(np.array(rolling), nan=1e300, posinf=1e300),
                     origin_paths=origin_paths)


def river_alternatives(series: Series) -> list[Forecasts]:
    from river import linear_model, optim, preprocessing, time_series

    m = series.seasonality

    def snarimax() -> Any:
        return time_series.SNARIMAX(
            p=1, d=0, q=1, m=m, sp=1, sq=1,
            regressor=preprocessing.StandardScaler() | preprocessing.TargetStandardScaler(
                linear_model.LinearRegression(optimizer=optim.SGD(0.003), intercept_lr=0.03)))

    def holt_winters() -> Any:
        return time_series.HoltWinters(alpha=0.3, beta=0.05, gamma=0.05, seasonality=m)

    return [river_alternative(series, f"River SNARIMAX(1,0,1)x(1,0,1,{m}), SGD", snarimax),
            river_alternative(series, "River HoltWinters(0.3, 0.05, 0.05), linear trend",
                              holt_winters)]


# ---------------------------------------------------------------------------------------
# The series
# ---------------------------------------------------------------------------------------


def cdnow_series() -> tuple[Series, list[tuple[int, float]]]:
    frame = load_transactions()
    start, end = pd.Timestamp("1997-01-01"), HOLDOUT_END
    daily = frame.groupby("date")["dollar_value"].sum()
    daily = daily.reindex(pd.date_range(start, end), fill_value=0.0)
    frame = frame[frame["date"] <= end].sort_values(["date", "transaction"])
    # At noon UTC of the date, as load_tests.quality.cdnow.purchase_event sends them.
    purchases = [(to_ms(date) + DAY_MS // 2, float(value))
                 for date, value in zip(frame["date"], frame["dollar_value"], strict=True)]
    calibration = (CALIBRATION_END - start).days + 1
    return Series("CDNOW daily revenue", daily.to_numpy(dtype=float), start, "day", calibration,
                  7, [("4 weeks", 28), ("13 weeks", 91)], origin_every=7,
                  origin_horizon=28), purchases


def simulated_series(customers: int, seed: int, days: int = 120,
                     calibration_days: int = 84) -> tuple[Series, Series, list[tuple[int, float]]]:
    shop = ShopSimulator(customers=customers, seed=seed, days=days)
    start = pd.Timestamp(shop.start.replace(tzinfo=None))
    start_ms = to_ms(start)
    hours = np.zeros(days * 24)
    purchases = []
    for event in shop.events():
        if event["type"] != "purchase":
            continue
        at_ms = to_ms(pd.Timestamp(event["occurred_at"]).tz_convert(None))
        purchases.append((at_ms, float(event["total"])))
        hours[(at_ms - start_ms) // HOUR_MS] += event["total"]
    name = f"simulated shop ({customers:,} customers, seed {seed})"
    hourly = Series(f"{name}, hourly", hours, start, "hour", calibration_days * 24, 24,
                    [("1 day", 24), ("1 week", 168)], origin_every=24, origin_horizon=24)
    daily = Series(f"{name}, daily", hours.reshape(-1, 24).sum(axis=1), start, "day",
                   calibration_days, 7, [("1 week", 7), ("4 weeks", 28)], origin_every=1,
                   origin_horizon=7)
    return hourly, daily, purchases


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def rows_for(series: Series) -> list[list[str]]:
    rows = []
    for method in series.methods:
        cells = [method.name]
        for _, horizon in series.horizons:
            actual = series.holdout[:horizon]
            interval = method.path_interval
            s = score(actual, method.path[:horizon], series.scale,
                      *(tuple(i[:horizon] for i in interval) if interval else ()))
            cells += [f"{s.mape:.1f}", f"{s.mase:.2f}",
                      f"{s.coverage:.2f}" if s.coverage is not None else "-"]
        s = score(series.holdout, method.rolling, series.scale,
                  *(method.rolling_interval or ()))
        cells += [f"{s.mape:.1f}", f"{s.mase:.2f}",
                  f"{s.coverage:.2f}" if s.coverage is not None else "-"]
        actual = np.concatenate([series.values[t: t + series.origin_horizon]
                                 for t in series.origins])
        s = score(actual, np.concatenate(method.origin_paths), series.scale)
        cells += [f"{s.mape:.1f}", f"{s.mase:.2f}"]
        rows.append([_big(c) for c in cells])
    return rows


def _big(cell: str) -> str:
    try:
        return "diverged" if float(cell) > 1e6 else cell
    except ValueError:
        return cell


def series_table(series: Series) -> list[str]:
    header = ["method"]
    for label, _ in series.horizons:
        header += [f"{label}: MAPE %", "MASE", "cover"]
    header += ["rolling 1-step: MAPE %", "MASE", "cover"]
    header += [f"{series.origin_horizon} ahead from {len(series.origins)} origins: MAPE %",
               "MASE"]
    return table(header, rows_for(series), align="l" + "r" * (len(header) - 1))


def plot_cdnow(series: Series, path: Path) -> None:
    plt = pyplot()
    dates = pd.date_range(series.start, periods=len(series.values))
    holdout_dates = dates[series.calibration:]
    ours, naive, arima = series.methods[0], series.methods[1], series.methods[2]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5))
    top.plot(dates, series.values, color="#444", lw=0.8, label="actual")
    top.axvspan(dates[0], dates[series.calibration - 1], color="#eee",
                label="calibration (39 weeks)")
    longest = len(ours.path)
    for method, colour in [(ours, "#1f77b4"), (arima, "#d62728")]:
        top.plot(holdout_dates[:longest], method.path, color=colour,
                 label=method.name.split(":")[0].split(" on ")[0])
        if method.path_interval:
            top.fill_between(holdout_dates[:longest], *method.path_interval, color=colour,
                             alpha=0.15)
    top.plot(holdout_dates[:longest], naive.path, color="#2ca02c", lw=0.8, ls="--",
             label="seasonal naive")
    top.set_title("CDNOW daily revenue: 13-week forecasts from the end of calibration, "
                  f"with {INTERVAL:.0%} intervals")
    top.set_ylabel("USD per day")
    top.legend(loc="upper right", fontsize=8)
    bottom.plot(holdout_dates, series.holdout, color="#444", lw=0.8, label="actual")
    bottom.plot(holdout_dates, ours.rolling, color="#1f77b4", lw=0.9,
                label="ours, one step ahead (learning as it goes)")
    assert ours.rolling_interval is not None
    bottom.fill_between(holdout_dates, *ours.rolling_interval, color="#1f77b4", alpha=0.15)
    bottom.set_title("Holdout (39 weeks): rolling one-step forecasts with intervals")
    bottom.set_ylabel("USD per day")
    bottom.legend(loc="upper right", fontsize=8)
    save_plot(figure, path)


def render(sections: Sequence[Series], plot: Path, seconds: float) -> str:
    cdnow = sections[0]
    lines = [*title("Revenue forecast quality"),
             f"{run_sentence()}, in {seconds:.0f} s. The product's `RevenueForecaster` was fed "
             "purchase events in event-time order in this process (bucket closing at the "
             "watermark included); the worker's wiring and what the API serves are judged "
             "separately. MAPE over buckets with revenue, MASE against the in-sample "
             "seasonal-naive error of the calibration period, `cover`: share of actuals "
             f"inside the {INTERVAL:.0%} prediction interval.", ""]
    lines += ["## CDNOW daily revenue", "",
              "`lifetimes/datasets/CDNOW_master.txt` (read from the installed wheel): every "
              "transaction at noon UTC of its date, all 23,570 customers. Calibration "
              "1997-01-01..1997-09-30 (39 weeks, 273 days), holdout 1997-10-01..1998-06-30 "
              "(39 weeks). Fixed-origin forecasts start on 1997-10-01; rolling one-step "
              "forecasts cover the whole holdout.", "",
              *series_table(cdnow), "", image("CDNOW forecasts", plot), ""]
    lines += COLLAPSE_NOTE
    for series in sections[1:]:
        lines += [f"## {series.name}", "",
                  f"`ShopSimulator`, 120 days from {series.start:%Y-%m-%d}; calibration the "
                  "first 84 days, holdout the last 36 (hours: a daily cycle, m = 24; days: a "
                  "weekly one, m = 7).", "", *series_table(series), ""]
    lines += SHOP_NOTE
    lines += CHOICE_NOTE
    lines += [reproduce_line("python -m load_tests.quality.forecast")]
    return "\n".join(lines) + "\n"


COLLAPSE_NOTE = [
    "CDNOW's customers were all acquired in the first quarter of 1997: daily revenue climbs "
    "to about $15,000 in March, collapses to about $4,000 by May as the cohort's first "
    "purchases end, then drifts down to about $2,500 with its repeat purchases (and a "
    "November-December bump). What that means for each method:", "",
    "- **Seasonal naive** has nothing to unlearn: after the collapse the last week is the best "
    "guess it can make, and the level barely moves in the holdout. It is a strong baseline "
    "here; the weekly cycle it copies is faint, so it mostly copies noise.",
    "- **statsmodels ARIMA** is fitted on the whole calibration, ramp and collapse included; "
    "on `log1p` the AIC picks a differenced (random-walk-like) model that forecasts a flat "
    "level from the last weeks, unaffected by the collapse for its point forecasts. Its "
    "intervals are estimated from the whole calibration's residuals, the turbulent first "
    "quarter included, and its 13-week intervals widen as a random walk's do.",
    "- **Ours** chose fast smoothing during the collapse and keeps following: the "
    "candidate Holt-Winters that forecast best recently is served, the trend is not "
    "extrapolated (a collapse extended for 13 weeks would forecast zero). Its intervals come "
    "from the last 7 weeks of its own residuals, so they reflect the calm after the "
    "collapse, not the first quarter.",
    "- **River's HoltWinters with its linear trend** extends whatever slope it has at the end "
    "of calibration (13 weeks: MASE 1.25); **SNARIMAX** learns its level through an SGD "
    "intercept, which follows a collapse slowly, but by the end of calibration it had.", "",
    "So on CDNOW ours is level with the ARIMA fitted offline (within 0.01-0.04 MASE "
    "everywhere, slightly behind), and both beat the seasonal naive one step ahead (0.38 "
    "and 0.37 against 0.59) and 4 weeks ahead from every origin; 13 weeks ahead from the "
    "one origin all three are alike (0.74-0.78): with the level flat after the collapse, "
    "nothing but the level is there to forecast.", ""]

SHOP_NOTE = [
    "Reading the simulated shop's tables: the fixed-origin columns are one origin (the "
    "first holdout hour or day), so they are noisy; the last two columns average every "
    "origin. Hourly revenue is skewed (a few big orders, quiet nights), so MAPE is dominated "
    "by small night hours, and an error measured in absolute terms (MASE) rewards the median: "
    "the ARIMA on `log1p` forecasts the median, ours the mean (what adds up to a day's "
    "revenue). From every origin, ours and the ARIMA are level hourly (0.80 and 0.81) and "
    "ours is ahead daily (0.58 against 0.87); both beat the seasonal naive. River's "
    "single Holt-Winters is as good as ours on the simulated days but extends a trend into "
    "nonsense over a week of hours (MASE 8.5), as it does on CDNOW over 13 weeks.", ""]

CHOICE_NOTE = [
    "## Why Holt-Winters, chosen online", "",
    "- River's `SNARIMAX` learns its coefficients by SGD: across the series above its error "
    "swung with the learning rate, the transform and the orders, and some configurations' "
    "multi-step forecasts diverged (the MA terms feed forecasts back in; tried while "
    "designing: orders up to (3,0,1)x(2,0,2), learning rates 0.001-0.01, raw and log1p).",
    "- River's `HoltWinters` initialises its trend from the first season: a new shop's "
    "ramp-up becomes a steep trend that its own forecast extends for weeks (the simulated "
    "shops start from nothing); ours forecasts level plus season (trend damping 0).",
    "- No fixed smoothing suits every shop: the simulated hours want slow smoothing, CDNOW's "
    "collapse fast. Ours runs 8 candidates (alpha 0.05-0.4, gamma 0.05 or 0.2) and serves "
    "the one with the lowest recent one-step error, which costs about 30 µs per closed "
    "bucket and series on this machine.",
    "- The design was chosen on the simulated shops; CDNOW holdout figures of some "
    "candidates were seen while designing, so CDNOW is not a fully blind test.",
    "- Intervals: empirical quantiles of the served candidate's last 7 seasons of one-step "
    "residuals, widened for h steps by Holt-Winters' variance factor. One step ahead they "
    "held 83-89% of actuals for a nominal 90% (a slight under-coverage, from small windows "
    "after level changes); the ARIMA's held 89-94% one step ahead and 100% 13 weeks ahead, "
    "where its random-walk intervals grew to five times the level.", ""]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "FORECAST.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    cdnow, purchases = cdnow_series()
    cdnow.methods = [replay_ours(purchases, cdnow, "cdnow"), seasonal_naive(cdnow),
                     statsmodels_arima(cdnow), *river_alternatives(cdnow)]
    log.info("CDNOW done in %.0f s", time.monotonic() - started)
    hourly, daily, shop = simulated_series(customers=6000, seed=5)
    hourly.methods = [replay_ours(shop, hourly, "shop"), seasonal_naive(hourly),
                      statsmodels_arima(hourly, grid=False), *river_alternatives(hourly)]
    daily.methods = [replay_ours(shop, daily, "shop"), seasonal_naive(daily),
                     statsmodels_arima(daily), *river_alternatives(daily)]
    plot = args.output.with_name("forecast_cdnow.png")
    plot_cdnow(cdnow, plot)
    write_report(args.output, render([cdnow, hourly, daily], plot, time.monotonic() - started))


if __name__ == "__main__":
    main()
