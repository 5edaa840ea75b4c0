"""One seasonal time series: River's Holt-Winters, its smoothing chosen online, with
prediction intervals from its own one-step residuals.

Why Holt-Winters, and why this way (the measurements are in ``load_tests/results/FORECAST.md``):

* **Holt-Winters over SNARIMAX.** SNARIMAX learns its coefficients by SGD; its accuracy
  swung with the learning rate, the transform and the orders from series to series, and its
  multi-step forecasts diverged on some (the MA terms feed forecasts back in). Holt-Winters
  is exponential smoothing: O(1) per bucket, nothing to diverge, three interpretable
  constants.
* **The smoothing is chosen online.** A shop's revenue may be noisy around a stable level
  (a small shop's hours: smooth hard) or shift level (CDNOW after its first quarter: follow
  fast), and its cycle may be faint or sharp. ``statsmodels`` fits the smoothing constants
  offline; here one Holt-Winters per candidate ``(alpha, gamma)`` learns every bucket, and
  the one with the lowest exponentially weighted one-step error (scored before learning) is
  served. (River initialises an additive season from ratios, so a sharp cycle is learnt
  only through ``gamma``, and a slow ``gamma`` alone is slow to find it.)
* **The trend is not extrapolated.** River's seasonal Holt-Winters needs a trend component,
  initialised as the mean step of the first season: a new shop's ramp-up then becomes a
  steep trend that a forecast extends for weeks. The forecast damps the trend with
  ``trend_damping`` (``phi``; 0 = level plus season), as in Gardner and McKenzie's damped
  trend; learning is River's, unchanged.
* **Intervals** are empirical quantiles of the served candidate's recent one-step residuals
  (revenue errors are skewed: a big order lands above, never as far below), widened for
  ``h`` steps ahead by the damped additive Holt-Winters variance factor
  ``sqrt(1 + sum_{j<h} c_j^2)``, ``c_j = alpha (1 + beta phi_j) + gamma [j mod m = 0]``
  (Hyndman et al., *Forecasting with Exponential Smoothing*, 2008, table 6.1). Their
  coverage is measured online (:attr:`SeasonalForecaster.covered`).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import NamedTuple

from river import time_series

__all__ = ["Prediction", "SeasonalForecaster", "empirical_quantile"]


class Prediction(NamedTuple):
    """A point forecast with its prediction interval (``lower <= value <= upper``)."""

    value: float
    lower: float
    upper: float


def empirical_quantile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile of ascending ``sorted_values``, interpolating linearly (numpy's
    default).

    >>> empirical_quantile([0.0, 1.0, 2.0, 10.0], 0.5)
    1.5
    >>> round(empirical_quantile([0.0, 1.0, 2.0, 10.0], 0.95), 6)
    8.8
    """
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    share = position - below
    return sorted_values[below] * (1.0 - share) + sorted_values[above] * share


class SeasonalForecaster:
    """Holt-Winters candidates (River, additive), the best recent one served, with intervals.

    Parameters
    ----------
    seasonality
        Buckets per season: 24 for hourly buckets (a daily cycle), 7 for daily ones (weekly).
    alphas, gammas
        Candidate level and season smoothing constants: one River ``HoltWinters`` per pair.
    beta
        Trend smoothing, shared by the candidates.
    trend_damping
        ``phi`` of the damped trend in forecasts (0: no trend, 1: River's linear trend).
    selection_decay
        Weight of the past in each candidate's running one-step absolute error.
    residual_window
        Recent one-step residuals kept per candidate for the intervals (default: 7 seasons).
    interval_level
        Nominal coverage of the prediction intervals.
    min_observations
        Buckets learnt before forecasts are served (default: 2 seasons; River's Holt-Winters
        uses its first season to initialise).

    Attributes
    ----------
    settings
        ``(alpha, gamma)`` of each candidate.
    candidates
        The River ``HoltWinters`` models, in :attr:`settings` order.
    errors
        Each candidate's exponentially weighted one-step absolute error.
    residuals
        Each candidate's recent one-step residuals (actual minus forecast).
    observations
        Buckets learnt.
    scored, covered, absolute_error, percentage_error, percentage_scored, scaled_error,
    scale_scored
        Progressive validation of the served one-step forecasts (made before learning, once
        :attr:`ready`): count, interval hits, sums of absolute error, of absolute percentage
        error over non-zero actuals, and of absolute error over the seasonal-naive scale
        (the running mean ``|y_t - y_{t-m}|`` before ``t``, as MASE's denominator).

    Examples
    --------
    A weekly cycle (busy weekends) with noise: the forecast follows the cycle, and the
    intervals hold most actuals.

    >>> import random
    >>> rng = random.Random(1)
    >>> pattern = [100, 100, 100, 100, 120, 180, 200]
    >>> model = SeasonalForecaster(seasonality=7)
    >>> for day in range(140):
    ...     _ = model.learn_one(pattern[day % 7] + rng.gauss(0, 5))
    >>> [round(p.value) for p in model.forecast(7)]
    [100, 100, 105, 102, 120, 180, 201]
    >>> week = model.forecast(7)
    >>> week[0].lower < week[0].value < week[0].upper
    True
    >>> 0.8 < model.covered / model.scored <= 1.0
    True
    """

    def __init__(
        self,
        *,
        seasonality: int,
        alphas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4),
        gammas: tuple[float, ...] = (0.05, 0.2),
        beta: float = 0.05,
        trend_damping: float = 0.0,
        selection_decay: float = 0.97,
        residual_window: int | None = None,
        interval_level: float = 0.9,
        min_observations: int | None = None,
    ) -> None:
        self.seasonality = seasonality
        self.alphas = alphas
        self.gammas = gammas
        self.beta = beta
        self.trend_damping = trend_damping
        self.selection_decay = selection_decay
        self.residual_window = residual_window or 7 * seasonality
        self.interval_level = interval_level
        self.min_observations = min_observations or 2 * seasonality
        self.settings = [(a, g) for g in gammas for a in alphas]
        self.candidates = self._new_candidates()
        self.errors = [0.0] * len(self.settings)
        self.residuals: list[deque[float]] = [
            deque(maxlen=self.residual_window) for _ in self.settings
        ]
        # The served candidate's residuals kept in order (see _sorted_residuals).
        self._sorted_index: int | None = None
        self._sorted: list[float] = []
        self.observations = 0
        self._recent: deque[float] = deque(maxlen=seasonality)  # for the naive scale
        self._naive_error_sum = 0.0
        self._naive_error_count = 0
        self.scored = 0
        self.covered = 0
        self.absolute_error = 0.0
        self.percentage_error = 0.0
        self.percentage_scored = 0
        self.scaled_error = 0.0
        self.scale_scored = 0

    @property
    def ready(self) -> bool:
        """Whether forecasts are served (enough buckets learnt)."""
        return self.observations >= self.min_observations

    @property
    def initialised(self) -> bool:
        # River's Holt-Winters forecasts once it has seen one season.
        return self.observations >= max(2, self.seasonality)

    @property
    def selected(self) -> int:
        """Index of the candidate served: the lowest running one-step error."""
        return min(range(len(self.errors)), key=self.errors.__getitem__)

    @property
    def scale(self) -> float | None:
        """Mean ``|y_t - y_{t-m}|`` so far (the seasonal-naive error), or ``None``."""
        if not self._naive_error_count or self._naive_error_sum == 0.0:
            return None
        return self._naive_error_sum / self._naive_error_count

    def _points(self, index: int, horizon: int) -> list[float]:
        model = self.candidates[index]
        river_points = model.forecast(horizon)
        # River's learned trend, which its forecast extends linearly (beta > 0: always there).
        trend = model.trend[-1] if model.trend else 0.0
        damped, phi_sum = [], 0.0
        for h, point in enumerate(river_points, start=1):
            phi_sum += self.trend_damping**h
            damped.append(point - trend * (h - phi_sum))
        return damped

    def _one_step(self, index: int) -> float:
        """``_points(index, 1)[0]`` without building lists: River's next forecast (level,
        plus trend, plus the season a cycle back) with its trend damped. Every candidate
        makes one per bucket, the bulk of a replay's forecasting."""
        model = self.candidates[index]
        trend = model.trend[-1] if model.trend else 0.0
        season = model.season[-self.seasonality] if model.season else 0.0
        return model.level[-1] + self.trend_damping * trend + season

    def _sorted_residuals(self, index: int) -> list[float]:
        """Candidate ``index``'s residuals in ascending order (do not change the list).

        The served candidate's are kept sorted as they come (:meth:`_keep_residual`) and
        sorted afresh only when another candidate is served, which is seldom: sorting the
        168 residuals of an hourly series took ~8 µs of each bucket's ~30 in a replay.
        """
        if getattr(self, "_sorted_index", None) != index:  # older checkpoints lack it
            self._sorted_index = index
            self._sorted = sorted(self.residuals[index])
        return self._sorted

    def _keep_residual(self, index: int, residual: float) -> None:
        window = self.residuals[index]
        if index == getattr(self, "_sorted_index", None):
            if len(window) == window.maxlen:  # the oldest leaves the window
                del self._sorted[bisect.bisect_left(self._sorted, window[0])]
            bisect.insort(self._sorted, residual)
        window.append(residual)

    def _predictions(self, index: int, horizon: int) -> list[Prediction]:
        # One step ahead (each bucket's served forecast) without River's list of points.
        points = [self._one_step(index)] if horizon == 1 else self._points(index, horizon)
        residuals = self._sorted_residuals(index)
        if len(residuals) < 2:
            return [Prediction(max(p, 0.0), max(p, 0.0), max(p, 0.0)) for p in points]
        tail = (1.0 - self.interval_level) / 2.0
        low_residual = empirical_quantile(residuals, tail)
        high_residual = empirical_quantile(residuals, 1.0 - tail)
        alpha, gamma = self.settings[index]
        predictions, variance, phi_sum = [], 1.0, 0.0
        for h, point in enumerate(points, start=1):
            if h > 1:  # the damped additive Holt-Winters factor, one term per step
                phi_sum += self.trend_damping ** (h - 1)
                seasonal = gamma if (h - 1) % self.seasonality == 0 else 0.0
                variance += (alpha * (1.0 + self.beta * phi_sum) + seasonal) ** 2
            widen = math.sqrt(variance)
            low, high = point + widen * low_residual, point + widen * high_residual
            # Revenue is never negative: the point and the interval are floored at zero.
            predictions.append(Prediction(max(point, 0.0), max(min(low, point), 0.0),
                                          max(high, point, 0.0)))
        return predictions

    def learn_one(self, y: float) -> Prediction | None:
        """Learn the next bucket's value; returns the forecast served for it (made before
        learning), or ``None`` while not :attr:`ready`.

        A first season without revenue (a series opened by an order with a total of 0,
        then a quiet season; or values that cancel out) starts the series again: River
        initialises the season as each value over the season's mean, and would divide by
        zero.
        """
        if (self.observations == max(2, self.seasonality) - 1
                and abs(math.fsum(self._recent) + y) < 1e-9):
            self._start_again()
            return None
        served: Prediction | None = None
        if self.initialised:
            chosen = self.selected
            if self.ready:
                served = self._predictions(chosen, 1)[0]
                self._score(y, served)
            for i in range(len(self.candidates)):
                residual = y - self._one_step(i)
                self.errors[i] = (self.selection_decay * self.errors[i]
                                  + (1.0 - self.selection_decay) * abs(residual))
                self._keep_residual(i, residual)
        if len(self._recent) == self.seasonality:
            self._naive_error_sum += abs(y - self._recent[0])
            self._naive_error_count += 1
        self._recent.append(y)
        for model in self.candidates:
            model.learn_one(y)
        self.observations += 1
        return served

    def _new_candidates(self) -> list[time_series.HoltWinters]:
        return [time_series.HoltWinters(alpha=a, beta=self.beta, gamma=g,
                                        seasonality=self.seasonality)
                for a, g in self.settings]

    def _start_again(self) -> None:
        self.candidates = self._new_candidates()
        self.observations = 0
        self._recent.clear()

    def _score(self, y: float, served: Prediction) -> None:
        error = abs(y - served.value)
        self.scored += 1
        self.covered += int(served.lower <= y <= served.upper)
        self.absolute_error += error
        if y != 0.0:
            self.percentage_error += error / abs(y)
            self.percentage_scored += 1
        scale = self.scale
        if scale is not None:
            self.scaled_error += error / scale
            self.scale_scored += 1

    def forecast(self, horizon: int) -> list[Prediction]:
        """The next ``horizon`` buckets with intervals (pure; empty until initialised)."""
        if not self.initialised or horizon < 1:
            return []
        return self._predictions(self.selected, horizon)

    def metrics(self) -> dict[str, float | None]:
        """MAE, MAPE (%, non-zero actuals), MASE and interval coverage of the served one-step
        forecasts so far (``None`` before the first)."""
        return {
            "mae": self.absolute_error / self.scored if self.scored else None,
            "mape": (100.0 * self.percentage_error / self.percentage_scored
                     if self.percentage_scored else None),
            "mase": self.scaled_error / self.scale_scored if self.scale_scored else None,
            "coverage": self.covered / self.scored if self.scored else None,
            "alpha": self.settings[self.selected][0] if self.initialised else None,
            "gamma": self.settings[self.selected][1] if self.initialised else None,
        }
