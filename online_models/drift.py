"""Drift detection on each model's progressive error: River's ADWIN, one per model.

Every model here is scored before it learns; the error of each scored example (churn log
loss, CLV absolute error, sentiment or triage 0/1 error, the forecast's scaled error) goes
into that model's ADWIN (Bifet and Gavaldà, 2007). ADWIN keeps the longest recent window
whose mean it cannot tell apart from any of its tails at confidence ``delta``; when it can,
it drops the older part: a change. Only a rise in error is a drift worth an alert: the
error falling (a model warming up, the world getting easier) moves the window on quietly.

ADWIN's memory is logarithmic in its window (buckets of exponentially growing size, at most
``max_buckets`` of each), so a monitor holds a few KB per model however long it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from river import drift

__all__ = ["DriftEvent", "DriftMonitor", "ModelDrift"]


@dataclass(frozen=True)
class DriftEvent:
    """A model's error rose: ADWIN dropped the older part of its window at ``at_ms``.

    ``error_before`` is the mean error of the part dropped, ``error_after`` of the recent
    part kept (about ``window`` examples); ``examples`` counts the errors seen so far.
    """

    model: str
    at_ms: int
    examples: int
    error_before: float
    error_after: float
    window: int

    @property
    def reason(self) -> str:
        """The change in words, for the ``model_drift`` alert.

        >>> DriftEvent("churn", 0, 5000, 0.31, 0.52, 180).reason
        'churn error rose from 0.310 to 0.520 over its last 180 examples (ADWIN)'
        """
        return (f"{self.model} error rose from {self.error_before:.3f} to "
                f"{self.error_after:.3f} over its last {self.window} examples (ADWIN)")


@dataclass
class ModelDrift:
    """One model's detector and what it found."""

    detector: drift.ADWIN
    examples: int = 0
    drifts: int = 0
    drifted_at: int | None = None


class DriftMonitor:
    """An ADWIN per model's error stream; :meth:`update` says when an error rose.

    Parameters
    ----------
    delta
        ADWIN's confidence: a smaller one raises fewer false alarms and detects later.
    clock
        ADWIN checks for a change every ``clock`` errors (the detection delay grows by up
        to that many; each check costs a pass over the buckets).
    grace_period
        Errors a model must have given before its changes count (its warm-up).
    min_window_length
        Shortest sub-window ADWIN compares.

    Attributes
    ----------
    models
        Per model name: its ADWIN, errors seen, drifts found and the event time of the last.

    Examples
    --------
    A model right 90% of the time, then only 60%: the rise is found within a few hundred
    errors.

    >>> import random
    >>> rng = random.Random(7)
    >>> monitor = DriftMonitor()
    >>> found = []
    >>> for i in range(4000):
    ...     error = float(rng.random() < (0.1 if i < 2000 else 0.4))
    ...     event = monitor.update("sentiment", error, at_ms=i * 1000)
    ...     if event is not None:
    ...         found.append(event)
    >>> [(e.model, e.at_ms // 1000 - 2000) for e in found]
    [('sentiment', 79)]
    >>> monitor.drifted_at("sentiment") == found[0].at_ms, round(found[0].error_before, 2)
    (True, 0.1)
    """

    def __init__(self, *, delta: float = 0.002, clock: int = 32, grace_period: int = 100,
                 min_window_length: int = 5) -> None:
        self.delta = delta
        self.clock = clock
        self.grace_period = grace_period
        self.min_window_length = min_window_length
        self.models: dict[str, ModelDrift] = {}

    def update(self, model: str, error: float, at_ms: int) -> DriftEvent | None:
        """Add one scored-before-learnt error of ``model`` at event time ``at_ms``; returns
        the drift if its error rose."""
        state = self.models.get(model)
        if state is None:
            state = self.models[model] = ModelDrift(drift.ADWIN(
                delta=self.delta, clock=self.clock, grace_period=self.grace_period,
                min_window_length=self.min_window_length))
        detector = state.detector
        total_before, width_before = detector.total, detector.width
        detector.update(error)
        state.examples += 1
        if not detector.drift_detected:
            return None
        # What ADWIN dropped is what the window held before, plus this error, minus what
        # it kept.
        dropped = width_before + 1 - detector.width
        if dropped <= 0:
            return None
        before = (total_before + error - detector.total) / dropped
        after = detector.estimation
        if after <= before:
            return None
        state.drifts += 1
        state.drifted_at = at_ms
        return DriftEvent(model=model, at_ms=at_ms, examples=state.examples,
                          error_before=before, error_after=after, window=int(detector.width))

    def drifted_at(self, model: str) -> int | None:
        """Event time of the model's last rise in error, or ``None``."""
        state = self.models.get(model)
        return state.drifted_at if state else None

    def metrics_dict(self) -> dict[str, dict[str, float | int | None]]:
        """Per model: ``drifted_at``, drifts found, errors seen, and ADWIN's current mean
        error and window."""
        return {
            name: {"drifted_at": state.drifted_at, "drifts": state.drifts,
                   "examples": state.examples, "error_mean": state.detector.estimation,
                   "window": int(state.detector.width)}
            for name, state in sorted(self.models.items())
        }
