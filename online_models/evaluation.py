"""Small progressive-evaluation helpers River does not ship: a calibration table and a hit rate."""

from __future__ import annotations

__all__ = ["BinnedROCAUC", "CalibrationTable", "HitRate"]


class CalibrationTable:
    """Mean predicted probability against the observed rate, in equal-width bins.

    Parameters
    ----------
    n_bins
        Number of equal-width probability bins over ``[0, 1]``.

    Attributes
    ----------
    counts, predicted_sums, observed_sums
        Per bin: examples, sum of predicted probabilities, sum of labels.

    Examples
    --------
    >>> table = CalibrationTable(n_bins=2)
    >>> for p, y in [(0.2, 0), (0.3, 1), (0.9, 1)]:
    ...     table.update(p, y)
    >>> table.rows()
    [{'bin': '0.0-0.5', 'count': 2, 'mean_predicted': 0.25, 'observed_rate': 0.5}, \
{'bin': '0.5-1.0', 'count': 1, 'mean_predicted': 0.9, 'observed_rate': 1.0}]
    """

    def __init__(self, n_bins: int = 10) -> None:
        self.n_bins = n_bins
        self.counts = [0] * n_bins
        self.predicted_sums = [0.0] * n_bins
        self.observed_sums = [0.0] * n_bins

    def update(self, probability: float, label: float) -> None:
        i = min(int(probability * self.n_bins), self.n_bins - 1)
        self.counts[i] += 1
        self.predicted_sums[i] += probability
        self.observed_sums[i] += label

    def rows(self) -> list[dict[str, object]]:
        """Non-empty bins, lowest first."""
        width = 1.0 / self.n_bins
        return [
            {
                "bin": f"{i * width:.1f}-{(i + 1) * width:.1f}",
                "count": n,
                "mean_predicted": round(self.predicted_sums[i] / n, 4),
                "observed_rate": round(self.observed_sums[i] / n, 4),
            }
            for i, n in enumerate(self.counts)
            if n
        ]


class BinnedROCAUC:
    """ROC-AUC from histograms of the predicted probability per class: O(1) per update.

    ``river.metrics.ROCAUC`` updates one confusion matrix per threshold (35 µs per update with
    50 thresholds); here an update is one increment, and :meth:`get` evaluates the
    Mann-Whitney statistic over the bins (ties within a bin count one half).

    Examples
    --------
    >>> auc = BinnedROCAUC()
    >>> for y, p in [(0, 0.1), (0, 0.4), (1, 0.35), (1, 0.8)]:
    ...     auc.update(y, p)
    >>> auc.get()
    0.75
    """

    def __init__(self, n_bins: int = 1000) -> None:
        self.n_bins = n_bins
        self.positives = [0] * n_bins
        self.negatives = [0] * n_bins

    def update(self, label: float | bool, probability: float) -> None:
        i = min(max(int(probability * self.n_bins), 0), self.n_bins - 1)
        if label:
            self.positives[i] += 1
        else:
            self.negatives[i] += 1

    def get(self) -> float:
        n_pos, n_neg = sum(self.positives), sum(self.negatives)
        if not n_pos or not n_neg:
            return 0.0
        below = 0  # negatives in lower bins
        concordant = 0.0
        for pos, neg in zip(self.positives, self.negatives, strict=True):
            concordant += pos * (below + 0.5 * neg)
            below += neg
        return concordant / (n_pos * n_neg)


class HitRate:
    """Share of events whose target was in the recommended list (progressive hit-rate@k).

    Examples
    --------
    >>> hits = HitRate()
    >>> hits.update(True); hits.update(False)
    >>> hits.get(), hits.n
    (0.5, 2)
    """

    def __init__(self) -> None:
        self.n = 0
        self.hits = 0

    def update(self, hit: bool) -> None:
        self.n += 1
        self.hits += int(hit)

    def get(self) -> float:
        return self.hits / self.n if self.n else 0.0
