"""Customer segments: incremental k-means on the behaviour vector, with readable labels."""

from __future__ import annotations

import collections
import functools
import math
import random
from collections.abc import Mapping

from river import cluster, compose, preprocessing

from online_models.features import to_original_units

__all__ = ["Segmenter"]


class Segmenter:
    """``StandardScaler | KMeans`` over :func:`~online_models.features.behaviour_vector`.

    Online k-means started from random centres leaves some centres stranded; so the first
    ``warmup`` vectors are buffered, the scaler is fitted on them and the centres are seeded
    k-means++ style (deterministic under ``seed``) before learning continues one vector at a
    time.

    Parameters
    ----------
    n_clusters
        Number of segments.
    halflife
        How far a centre moves towards each vector it wins (River's ``KMeans.halflife``).
    warmup
        Vectors buffered before the centres are seeded.
    seed
        Seed of the k-means++ seeding and of River's random centre initialisation.
    new_days, lapsing_days, lost_days
        Thresholds used by :meth:`label_for` ("new" tenure; "lapsing"/"lost" recency).

    Attributes
    ----------
    model
        The River pipeline; ``model["KMeans"].centers`` are the centres in scaled units.
    example_count
        Vectors learnt.

    Examples
    --------
    >>> rng = random.Random(1)
    >>> segmenter = Segmenter(n_clusters=2, warmup=20)
    >>> for i in range(200):
    ...     big = i % 2 == 0
    ...     _ = segmenter.learn({"log_orders": rng.gauss(2.5 if big else 0.2, 0.1),
    ...                      "log_revenue": rng.gauss(7.0 if big else 1.0, 0.2),
    ...                      "log_recency_days": rng.gauss(1.0 if big else 5.0, 0.2)})
    >>> a = segmenter.assign({"log_orders": 2.5, "log_revenue": 7.0, "log_recency_days": 1.0})
    >>> b = segmenter.assign({"log_orders": 0.2, "log_revenue": 1.0, "log_recency_days": 5.0})
    >>> a != b
    True
    >>> segmenter.label_for(a), segmenter.label_for(b)
    ('frequent high spenders', 'lost browsers')
    """

    #: Labels are derived again after this many examples. Centroids move little in between,
    #: and deriving them (every centroid back in natural units) costs 60-80 µs, which the
    #: worker paid once per micro-batch: a few per cent of a small batch's ~2.4 ms fixed cost.
    RELABEL_EVERY = 64
    # Class-level defaults, so checkpoints pickled before the cache existed load as well.
    _labels: dict[int, str] | None = None
    _labelled_at = 0

    def __init__(
        self,
        *,
        n_clusters: int = 5,
        halflife: float = 0.05,
        warmup: int = 200,
        seed: int = 42,
        new_days: float = 30.0,
        lapsing_days: float = 60.0,
        lost_days: float = 120.0,
    ) -> None:
        self.n_clusters = n_clusters
        self.halflife = halflife
        self.warmup = warmup
        self.seed = seed
        self.new_days = new_days
        self.lapsing_days = lapsing_days
        self.lost_days = lost_days
        self.model = compose.Pipeline(
            preprocessing.StandardScaler(),
            cluster.KMeans(n_clusters=n_clusters, halflife=halflife, seed=seed),
        )
        self.example_count = 0
        self._buffer: list[dict[str, float]] | None = []

    @property
    def model_version(self) -> str:
        return f"segments-v1+{self.example_count}"

    def assign(self, vector: Mapping[str, float]) -> int:
        """The segment of ``vector``; pure (River 0.26 pipelines don't fit on predict)."""
        return int(self.model.predict_one(dict(vector)))

    def learn(self, vector: Mapping[str, float]) -> int:
        """Learn from ``vector``; returns its segment (the centre that moved towards it)."""
        x = dict(vector)
        self.example_count += 1
        if self._buffer is not None:
            self.model["StandardScaler"].learn_one(x)
            self._buffer.append(x)
            if len(self._buffer) >= max(self.warmup, self.n_clusters):
                self._seed_centres(self._buffer)
                self._buffer = None
            return self.assign(x)
        # Pipeline.learn_one, spelled out to get the winning centre without a second search.
        scaler = self.model["StandardScaler"]
        scaler.learn_one(x)
        return int(self.model["KMeans"].learn_predict_one(scaler.transform_one(x)))

    def _seed_centres(self, vectors: list[dict[str, float]]) -> None:
        scaler = self.model["StandardScaler"]
        kmeans = self.model["KMeans"]
        points = [scaler.transform_one(x) for x in vectors]
        rng = random.Random(self.seed)
        centres = [points[rng.randrange(len(points))]]
        while len(centres) < self.n_clusters:  # k-means++: far points are likelier seeds
            d2 = [min(_sq_dist(p, c) for c in centres) for p in points]
            centres.append(
                points[rng.choices(range(len(points)), weights=d2)[0]]
                if sum(d2)
                else points[rng.randrange(len(points))]
            )
        gauss = functools.partial(kmeans._rng.gauss, kmeans.mu, kmeans.sigma)
        for i, centre in enumerate(centres):
            kmeans.centers[i] = collections.defaultdict(gauss, centre)
        for point in points:
            kmeans.learn_one(point)

    def centroid(self, segment: int) -> dict[str, float]:
        """The segment's centre in natural units (``orders``, ``revenue``, ``recency_days``...)."""
        scaler = self.model["StandardScaler"]
        centre = self.model["KMeans"].centers[segment]
        natural = {}
        for name, scaled in centre.items():
            if name not in scaler.means:
                continue
            value = scaled * math.sqrt(scaler.vars[name]) + scaler.means[name]
            unit, natural_value = to_original_units(name, value)
            natural[unit] = natural_value
        return natural

    def labels(self) -> dict[int, str]:
        """A distinct human-readable label per segment, derived from the centroids at most
        :attr:`RELABEL_EVERY` examples ago (do not change the returned dict)."""
        if self._labels is None or self.example_count - self._labelled_at >= self.RELABEL_EVERY:
            self._labels, self._labelled_at = self._derive_labels(), self.example_count
        return self._labels

    def _derive_labels(self) -> dict[int, str]:
        centroids = {i: self.centroid(i) for i in range(self.n_clusters)}
        revenues = sorted(c.get("revenue", 0.0) for c in centroids.values())
        top_revenue = revenues[-1]
        labels = {i: self._describe(c, top_revenue) for i, c in centroids.items()}
        return _make_distinct(labels, centroids)

    def label_for(self, segment: int) -> str:
        """The label of one segment (computes all of them: cache :meth:`labels` when hot)."""
        return self.labels()[segment]

    def _describe(self, centroid: Mapping[str, float], top_revenue: float) -> str:
        orders = centroid.get("orders", 0.0)
        revenue = centroid.get("revenue", 0.0)
        if orders < 0.5:
            noun = "browsers"
        elif orders < 1.5:
            noun = "one-time buyers"
        elif orders < 4:
            noun = "repeat buyers"
        else:
            noun = "frequent buyers"
        if orders >= 0.5 and top_revenue > 0 and revenue >= top_revenue:
            noun = noun.replace("buyers", "high spenders")  # the best-spending segment
        status = ""
        recency = centroid.get("recency_days")
        tenure = centroid.get("tenure_days")
        if recency is not None and recency >= self.lost_days:
            status = "lost"
        elif recency is not None and recency >= self.lapsing_days:
            status = "lapsing"
        elif tenure is not None and tenure < self.new_days:
            status = "new"
        if centroid.get("sentiment", 0.0) < -0.2:
            status = f"unhappy {status}".strip()
        return f"{status} {noun}".strip()


def _sq_dist(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    return sum((a.get(k, 0.0) - b.get(k, 0.0)) ** 2 for k in {*a, *b})


def _make_distinct(
    labels: dict[int, str], centroids: Mapping[int, Mapping[str, float]]
) -> dict[int, str]:
    """Disambiguate equal labels by spend (then by number), so each segment reads differently."""
    by_label: dict[str, list[int]] = collections.defaultdict(list)
    for segment, label in labels.items():
        by_label[label].append(segment)
    distinct = dict(labels)
    for label, segments in by_label.items():
        if len(segments) == 1:
            continue
        ranked = sorted(segments, key=lambda s: -centroids[s].get("revenue", 0.0))
        for rank, segment in enumerate(ranked):
            if len(ranked) == 2:
                distinct[segment] = f"{label} ({'higher' if rank == 0 else 'lower'} spend)"
            else:
                distinct[segment] = f"{label} (spend rank {rank + 1})"
    return distinct
