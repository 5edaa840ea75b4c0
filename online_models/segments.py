"""Customer segments: k-means over a sample of current customers, with stable identities.

A segment should describe a kind of customer ("frequent small baskets"), count each current
customer once, and keep its number and label while the shop's customers slowly change.
Online k-means fed with every customer update does none of that: active customers pull the
centres once per visit, centres started at random strand, and nothing ties centre 3 of
today to centre 3 of an hour ago. So a :class:`Segmenter`:

* keeps the latest :func:`~online_models.features.behaviour_vector` of a uniform sample of
  its customers (a bottom-k sample by a stable hash of the id: each customer in it once,
  whatever their activity), standardized over that sample;
* refits k-means (SciPy's ``kmeans2``, k-means++ with restarts) on the sample every
  ``refit_every`` updates, choosing the number of segments from time to time by stability
  (Lange et al., 2004): the most segments on which fits to different subsamples agree
  (adjusted Rand index of their assignments) within :data:`STABLE_MARGIN` of the best
  agreement of any number. On our simulated shop and the quality families this found the
  planted number where the silhouette took one too many or too few. A choice is a few
  hundred small fits, so while it keeps giving the same number the next one waits twice as
  many refits (up to :data:`MAX_CHOICE_BACKOFF` times the interval); a new number brings the
  interval back;
* fills in what a vector lacks (a browser's spend per order) with the sample's median, so
  never having bought does not read as spending nothing per order;
* matches the new centres to the previous ones (Hungarian assignment on their distance), so
  a segment keeps its id and label while its centre moves; a new segment gets a new id;
* assigns any customer to the nearest centre, so scoring needs no learning.

Several workers serve a tenant's customers, each learning its own (partitions split them
by customer). One of them fits the tenant's segments, the others take its fit
(:meth:`Segmenter.fit_state`, :meth:`Segmenter.adopt`), so a segment has one id and label
whichever worker scores its customers (see ``agents.segment_sharing``).

:class:`TenantSegments` keeps one segmenter per tenant: shops differ in their scales (one
sells books, another sofas), and their segments must not mix.
"""

from __future__ import annotations

import heapq
import inspect
import math
import uuid
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.cluster.vq import kmeans2, vq
from scipy.optimize import linear_sum_assignment

__all__ = ["SegmentSummary", "Segmenter", "TenantSegments", "describe_segments"]

#: A number of segments is as stable as the most stable one if its subsample fits agree
#: within this margin of that one's (adjusted Rand index).
STABLE_MARGIN = 0.03
#: Customers (at most) the number of segments is chosen on, and subsample pairs compared.
#: Twelve pairs, not six: with six, a larger number's fits agreeing by luck could win. Replaying
#: the big-spenders family (two planted groups) through the segmenter in batches of random
#: sizes put one run in eight at six segments for good (adjusted Rand 0.39 instead of 0.92:
#: agreement 0.919 for six against 0.910 for two); with twelve, none of 16 runs. Choosing
#: is a few hundred small fits every fifth refit.
CHOOSE_ON, CHOOSE_PAIRS = 800, 12
#: Every number is first tried on this many pairs; only those within :data:`SCREEN_MARGIN`
#: of the best then get the rest (see :func:`passing_screen`). Numbers far behind after four
#: pairs do not come within :data:`STABLE_MARGIN` after twelve, and skipping them halves the
#: fits of a choice. On 39 samples of replayed shops, the choice screened this way was the
#: choice with every pair on all but one (a screen on the mean alone: all but two, on the
#: median alone: all but five).
SCREEN_PAIRS, SCREEN_MARGIN = 4, 0.15
#: Lloyd iterations of each subsample fit of a choice (SciPy's ``kmeans2``, k-means++
#: seeded). On 390 customers of a family's sample (2 to 8 segments) scikit-learn's ``KMeans``
#: took 2.5-10 ms to fit and predict, most of it fixed overhead (validation, thread-pool
#: limits), ``kmeans2`` with 30 iterations and ``vq`` 0.7-1.1 ms. On the
#: final samples of the quality families, 8 seeds each, the choices were the same for
#: big spenders, gradual fade and seasonal, as good for our simulator (mean adjusted Rand
#: against its groups 0.669, scikit-learn 0.676); abrupt stop took its 3 planted groups 8
#: times of 8 (scikit-learn: 5), browsers 2 segments 2 times of 8 (scikit-learn: 6).
#: With 10 iterations abrupt stop took 3 only 4 times of 8: fits stopped short of converging
#: disagree more. A fit stops sooner at a fixed point (:func:`_lloyd`), with the same
#: answer: a choice took 38-72 ms instead of 54-99 on those samples, the same numbers.
CHOICE_ITERATIONS = 30
#: The fits the segments are served from (SciPy's ``kmeans2``): the best of this many
#: k-means++ seeded restarts when the number is chosen, the previous centres refined in
#: between; Lloyd iterations until a fixed point (checked every :data:`CONVERGENCE_CHECK`),
#: at most :data:`FIT_ITERATIONS`. They were scikit-learn's
#: ``KMeans`` (same restarts): its import (~1 s) stalled the first refit's batch, and each
#: fit checked its input and the thread pools (threadpoolctl lists the loaded libraries
#: each time) for a few ms on a sample of a few hundred customers.
FIT_RESTARTS, FIT_ITERATIONS, CONVERGENCE_CHECK = 4, 300, 5
#: The interval between two choices doubles while they agree, up to this many times
#: ``choose_k_every``. A choice takes 38-72 ms on the quality families' samples, against
#: 2-3 ms for the restarts of a fit at a chosen number, and less to refine centres (with
#: scikit-learn's fits: ~0.4 s against ~0.02 s); without the backoff a shop whose sample is
#: full chose every 25,000 updates, a few per cent of the worker's time spent confirming
#: what it knew.
MAX_CHOICE_BACKOFF = 8

#: A segment most of whose customers were seen on one day only buys "one-time" (see
#: :func:`describe`).
ONE_TIME_MAJORITY = 0.5

#: The behaviour vector's features in a fixed order (see ``behaviour_vector``).
FEATURES = ("log_orders_per_week", "log_spend_per_order", "purchase_share",
            "log_views_per_visit", "log_carts_per_order", "log_days_between_visits",
            "log_tickets_per_visit", "log_searches_per_view")


@dataclass(frozen=True)
class SegmentSummary:
    """One segment as people see it: its id, label, share of the sample and centre in
    natural units (orders per week, spend per order, ...)."""

    segment: int
    label: str
    share: float
    centroid: dict[str, float]


class Segmenter:
    """Segments of one tenant's customers.

    Parameters
    ----------
    min_segments, max_segments
        The range the number of segments is chosen from.
    sample_size
        Customers whose latest behaviour is kept for refits.
    refit_every
        Customer updates between refits (sooner while the sample is small).
    choose_k_every
        Refits between two choices of the number of segments (in between, the centres are
        refined from where they were); doubled after each choice that keeps the number.
    min_customers
        Customers in the sample before the first fit: until then no segment is assigned.
    seed
        Seed of k-means' initialisation.

    Attributes
    ----------
    example_count
        Customer updates learnt.
    centres
        Segment id -> centre in standardized units of the last refit.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> segmenter = Segmenter(min_customers=30, refit_every=100)
    >>> def customer(kind):
    ...     big = kind == "big"
    ...     return {"log_orders_per_week": rng.gauss(0.2 if big else 1.2, 0.05),
    ...             "log_spend_per_order": rng.gauss(6.0 if big else 3.0, 0.2),
    ...             "purchase_share": rng.gauss(0.5, 0.05)}
    >>> for i in range(300):
    ...     segmenter.learn(f"c{i}", customer("big" if i % 2 else "small"))
    >>> big, small = segmenter.assign(customer("big")), segmenter.assign(customer("small"))
    >>> big != small, len(segmenter.centres)
    (True, 2)
    >>> segmenter.labels()[big], segmenter.labels()[small]
    ('big spenders, rare', 'frequent small baskets')
    """

    def __init__(
        self,
        *,
        min_segments: int = 2,
        max_segments: int = 8,
        sample_size: int = 5000,
        refit_every: int = 5000,
        choose_k_every: int = 5,
        min_customers: int = 50,
        seed: int = 42,
    ) -> None:
        self.min_segments = min_segments
        self.max_segments = max_segments
        self.sample_size = sample_size
        self.refit_every = refit_every
        self.choose_k_every = choose_k_every
        self.min_customers = min_customers
        self.seed = seed
        #: The behaviour vector's features this segmenter measures (see ``__setstate__``).
        self.features = FEATURES
        #: Names this segmenter among those of other workers: their segment ids and labels
        #: are their own (see ``feature_store.reads.current_segment``).
        self.identity = uuid.uuid4().hex[:12]
        #: Whether this segmenter refits: not while another worker fits the tenant's
        #: segments (then it takes theirs, :meth:`adopt`), but it keeps its sample.
        self.fitting = True
        self.example_count = 0
        self.refits = 0
        #: Refits between the last choice of the number of segments and the next.
        self.choice_interval = choose_k_every
        self._next_choice = 0  # the refit count at which the number is chosen again
        self.centres: dict[int, np.ndarray] = {}
        #: The centres' ids and one array of them, for assign (see ``_stacked_centres``).
        self._stacked: tuple[list[int], np.ndarray] | None = None
        self._sample: dict[str, tuple[float, ...]] = {}
        self._largest: list[tuple[int, str]] = []  # max-heap (negated hash) of the sample
        self._updates_since_fit = 0
        self._means = np.zeros(len(FEATURES))
        self._scales = np.ones(len(FEATURES))
        self._fill = np.zeros(len(FEATURES))
        self._next_id = 0
        self._labels: dict[int, str] = {}
        self._shares: dict[int, float] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore from a checkpoint. A segmenter saved when the behaviour vector had other
        features (an older release) starts again with its options and an empty sample:
        its centres and sample rows cannot be read in today's features, and the customers'
        next updates refill it within one sample's worth of events."""
        if state.get("features") != FEATURES:
            options = inspect.signature(Segmenter).parameters  # the constructor's, by name
            state = type(self)(**{name: state[name] for name in options}).__dict__  # type: ignore[arg-type]
        self.__dict__.update(state)
        # Built again from the centres: one saved before a refit rebuilt it may be stale.
        self._stacked = None
        if "identity" not in state:  # saved before segmenters had one
            self.identity = uuid.uuid4().hex[:12]
        # Whether it fits is the running worker's role, not the model's: a restored segmenter
        # fits until its worker shares the tenant's segments with others.
        self.fitting = True

    def learn(self, customer_id: str, vector: Mapping[str, float]) -> None:
        """Take a customer's latest behaviour into the sample (if they belong to it)."""
        self.example_count += 1
        self._updates_since_fit += 1
        row = tuple(float(vector.get(name, math.nan)) for name in FEATURES)
        if customer_id in self._sample:
            self._sample[customer_id] = row
        else:
            key = -_stable_hash(customer_id)
            if len(self._sample) < self.sample_size:
                self._sample[customer_id] = row
                heapq.heappush(self._largest, (key, customer_id))
            elif key > self._largest[0][0]:  # a smaller hash than the sample's largest
                _, evicted = heapq.heapreplace(self._largest, (key, customer_id))
                del self._sample[evicted]
                self._sample[customer_id] = row
        self.refit_if_due()

    def refit_if_due(self) -> None:
        """Refit if this segmenter fits and enough updates came since its last fit (also
        called by a worker that has just taken over the fitting)."""
        due = min(self.refit_every, max(self.min_customers, len(self._sample)))
        if (self.fitting and len(self._sample) >= self.min_customers
                and self._updates_since_fit >= due):
            self.refit()

    def forget(self, customer_id: str) -> None:
        """Erasure: drop the customer from the sample."""
        if self._sample.pop(customer_id, None) is not None:
            self._largest = [(key, c) for key, c in self._largest if c != customer_id]
            heapq.heapify(self._largest)

    def assign(self, vector: Mapping[str, float]) -> int | None:
        """The segment of ``vector`` (nearest centre); ``None`` before the first fit."""
        if not self.centres:
            return None
        raw = np.array([float(vector.get(name, math.nan)) for name in FEATURES])
        raw = np.where(np.isnan(raw), self._fill, raw)
        z = (raw - self._means) / self._scales
        ids, stacked = self._stacked_centres()
        # The first nearest on a tie, as min() over the centres in order would pick.
        return ids[int(np.argmin(((stacked - z) ** 2).sum(axis=1)))]

    def _stacked_centres(self) -> tuple[list[int], np.ndarray]:
        """The centres' ids and one array of them (built again after each refit: a refit
        that refines the centres keeps their ids, so the ids cannot tell a stale array)."""
        stacked = self._stacked
        if stacked is None:
            stacked = self._stacked = (list(self.centres), np.array(list(self.centres.values())))
        return stacked

    def labels(self) -> dict[int, str]:
        """A distinct label per segment, in a marketer's words."""
        return self._labels

    def summaries(self) -> list[SegmentSummary]:
        return [SegmentSummary(segment, self._labels[segment], self._shares.get(segment, 0.0),
                               self.centroid(segment)) for segment in sorted(self.centres)]

    def centroid(self, segment: int) -> dict[str, float]:
        """The segment's centre in natural units (``orders_per_week``, ``spend_per_order``...)."""
        raw = self.centres[segment] * self._scales + self._means
        return natural_units(dict(zip(FEATURES, raw.tolist(), strict=True)))

    @property
    def fit_version(self) -> tuple[str, int]:
        """Which fit the segments are of: the segmenter's identity and its refits."""
        return self.identity, self.refits

    def fit_state(self) -> dict[str, Any]:
        """The segments as fitted (JSON-ready): what another worker needs to assign, label and
        refit them as this one does; the sample stays here."""
        return {
            "identity": self.identity, "refits": self.refits, "features": list(FEATURES),
            "centres": [[segment, centre.tolist()] for segment, centre in self.centres.items()],
            "means": self._means.tolist(), "scales": self._scales.tolist(),
            "fill": self._fill.tolist(),
            "labels": [[segment, label] for segment, label in self._labels.items()],
            "shares": [[segment, share] for segment, share in self._shares.items()],
            "next_id": self._next_id, "choice_interval": self.choice_interval,
            "next_choice": self._choice_due()}

    def adopt(self, state: Mapping[str, Any]) -> bool:
        """Take the segments another worker fitted (:meth:`fit_state`), identity included;
        ``False`` (nothing taken) if they are of other features (another release). The sample
        and the count of updates stay this segmenter's: when it fits next (taking over), it
        refines these centres on its own customers, and the segments keep their ids."""
        if list(state["features"]) != list(FEATURES):
            return False
        self.identity, self.refits = str(state["identity"]), int(state["refits"])
        self.centres = {int(segment): np.array(centre, dtype=float)
                        for segment, centre in state["centres"]}
        self._means, self._scales, self._fill = (np.array(state[name], dtype=float)
                                                 for name in ("means", "scales", "fill"))
        self._labels = {int(segment): str(label) for segment, label in state["labels"]}
        self._shares = {int(segment): float(share) for segment, share in state["shares"]}
        self._next_id = int(state["next_id"])
        self.choice_interval = int(state["choice_interval"])
        self._next_choice = int(state["next_choice"])
        self._stacked = None
        return True

    def refit(self, *, choose_k: bool = False) -> None:
        """k-means on the sample, matched to the previous centres; ``choose_k``: choose the
        number of segments now, whether or not a choice is due."""
        self._updates_since_fit = 0
        ids = sorted(self._sample)
        raw = np.array([self._sample[c] for c in ids])
        missing = np.isnan(raw)
        fill = np.array([np.median(column[~gaps]) if (~gaps).any() else 0.0
                         for column, gaps in zip(raw.T, missing.T, strict=True)])
        raw = np.where(missing, fill, raw)
        means, scales = raw.mean(axis=0), raw.std(axis=0)
        scales[scales < 1e-9] = 1.0
        z = (raw - means) / scales
        distinct = len({tuple(row) for row in z.round(6).tolist()})
        previous = {segment: centre * self._scales + self._means
                    for segment, centre in self.centres.items()}  # raw units
        choice_due = self._choice_due()
        choose = choose_k or not self.centres or self.refits >= choice_due
        k = self._choose_k(z, distinct) if choose else len(previous)
        if k < 2 or distinct <= k:
            return
        if choose:
            kept = k == len(previous)
            self.choice_interval = (min(2 * self.choice_interval,
                                        MAX_CHOICE_BACKOFF * self.choose_k_every)
                                    if kept else self.choose_k_every)
            self._next_choice = self.refits + self.choice_interval
            centres = _best_of_restarts(z, k, seed=self.seed)
        else:  # the same number: refine the previous centres on today's sample
            start = (np.array(list(previous.values())) - means) / scales
            centres = _lloyd(z, start)
        labels = vq(z, centres, check_finite=False)[0]
        self.refits += 1
        self._means, self._scales, self._fill = means, scales, fill
        self.centres = self._match(centres, previous)
        self._stacked = None
        order = list(self.centres)
        counts = np.bincount(labels, minlength=len(centres))
        by_position = {position: segment for position, segment in enumerate(order)}
        self._shares = {by_position[i]: float(counts[i]) / len(z) for i in range(len(centres))}
        one_day = np.bincount(labels, weights=missing[:, FEATURES.index("log_orders_per_week")],
                              minlength=len(centres))
        self._labels = describe_segments(
            {segment: self.centroid(segment) for segment in self.centres},
            reference=natural_units(dict(zip(FEATURES, np.median(raw, axis=0).tolist(),
                                             strict=True))),
            buyers_spend=float(np.expm1(fill[FEATURES.index("log_spend_per_order")])),
            one_day_shares={by_position[i]: float(one_day[i] / max(counts[i], 1))
                            for i in range(len(centres))})

    def _choice_due(self) -> int:
        """The refit count at which the number of segments is chosen again."""
        if not hasattr(self, "_next_choice"):  # a checkpoint from before the backoff
            self.choice_interval = self.choose_k_every
            self._next_choice = self.refits + -self.refits % self.choose_k_every
        return self._next_choice

    def _choose_k(self, z: np.ndarray, distinct: int) -> int:
        """The most segments about as stable as the most stable number (see
        :data:`STABLE_MARGIN`)."""
        rng = np.random.default_rng(self.seed)
        points = z[rng.choice(len(z), min(len(z), CHOOSE_ON), replace=False)]
        size = int(0.7 * len(points))
        # The same subsample pairs for every number of segments: what differs between the
        # numbers is then the number, not the luck of the draw.
        pairs = [(rng.choice(len(points), size, replace=False),
                  rng.choice(len(points), size, replace=False)) for _ in range(CHOOSE_PAIRS)]

        def agreement(k: int, pair: int) -> float:
            labels = []
            for side, sample in enumerate(pairs[pair]):
                centres = _seeded(points[sample], k, seed=self.seed + 2 * pair + side,
                                  iterations=CHOICE_ITERATIONS)
                labels.append(vq(points, centres, check_finite=False)[0])
            return adjusted_rand(*labels)

        numbers = range(self.min_segments, min(self.max_segments, distinct - 1) + 1)
        with warnings.catch_warnings():  # a subsample's fit may leave a centre empty
            warnings.simplefilter("ignore", UserWarning)
            screened = {k: [agreement(k, pair) for pair in range(SCREEN_PAIRS)]
                        for k in numbers}
            if not screened:
                return 0
            stability = {k: float(np.mean(screened[k] + [agreement(k, pair) for pair in
                                                          range(SCREEN_PAIRS, CHOOSE_PAIRS)]))
                         for k in passing_screen(screened)}
        best = max(stability.values())
        return max(k for k, score in stability.items() if score >= best - STABLE_MARGIN)

    def _match(self, centres: np.ndarray, previous: dict[int, np.ndarray]
               ) -> dict[int, np.ndarray]:
        """New centres keyed by the id of the previous centre each replaces (nearest by a
        one-to-one assignment, in today's units); new ids for the rest. Keeps the order of
        ``centres``."""
        ids: list[int | None] = [None] * len(centres)
        if previous:
            old_ids = list(previous)
            old = (np.array([previous[i] for i in old_ids]) - self._means) / self._scales
            cost = ((centres[:, None, :] - old[None, :, :]) ** 2).sum(axis=2)
            for row, column in zip(*linear_sum_assignment(cost), strict=True):
                ids[row] = old_ids[column]
        matched: dict[int, np.ndarray] = {}
        for position, centre in enumerate(centres):
            segment = ids[position]
            if segment is None:
                segment, self._next_id = self._next_id, self._next_id + 1
            matched[segment] = centre
        self._next_id = max(self._next_id, max(matched) + 1)
        return matched


def passing_screen(screened: Mapping[int, list[float]]) -> list[int]:
    """The numbers of segments worth all the pairs: those within :data:`SCREEN_MARGIN` of
    the best on the first pairs, by their mean agreement or by their median.

    The screen only saves fits: it should drop a number only when trying every pair could
    not have chosen it. By the mean alone, one subsample fit in a poor local optimum (0.13
    beside 0.83-0.98, in a replay of the big-spenders shop) dropped two segments, the number
    most stable over every pair. By the median alone, a leader with one poor pair raised
    the bar and dropped numbers that every pair would have chosen. A number behind by both
    is behind:

    >>> passing_screen({2: [0.83, 0.13, 0.96, 0.98], 3: [0.90, 0.91, 0.90, 0.92],
    ...                 4: [0.70, 0.72, 0.71, 0.69], 6: [0.60, 0.95, 0.62, 0.58]})
    [2, 3]
    """
    means = {k: float(np.mean(scores)) for k, scores in screened.items()}
    medians = {k: float(np.median(scores)) for k, scores in screened.items()}
    best_mean, best_median = max(means.values()), max(medians.values())
    return [k for k in screened if means[k] >= best_mean - SCREEN_MARGIN
            or medians[k] >= best_median - SCREEN_MARGIN]


def _seeded(z: np.ndarray, k: int, *, seed: int, iterations: int) -> np.ndarray:
    """k-means (SciPy's ``kmeans2``) seeded by k-means++ with ``seed``: the centres after
    ``iterations`` Lloyd iterations, or sooner at a fixed point (:func:`_lloyd`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty centre
        centres, labels = kmeans2(z, k, iter=1, minit="++", rng=seed, check_finite=False)
    return _lloyd(z, centres, labels, iterations=iterations - 1)


def _lloyd(z: np.ndarray, centres: np.ndarray, labels: np.ndarray | None = None, *,
           iterations: int = FIT_ITERATIONS) -> np.ndarray:
    """Lloyd iterations (SciPy's ``kmeans2``) from ``centres``, whose points were
    ``labels``, until a fixed point or ``iterations``. A centre left empty stays where it
    was.

    At a fixed point (the centres assign every point as the labels they were computed from)
    further iterations change nothing, so the answer is the one ``kmeans2`` gives with all
    ``iterations``, without them: fits of a few hundred customers settle in a few
    iterations, and the choice of the number of segments runs hundreds of them.
    """
    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty centre
        while done < iterations:
            if labels is not None and np.array_equal(
                    vq(z, centres, check_finite=False)[0], labels):
                break
            step = min(CONVERGENCE_CHECK, iterations - done)
            centres, labels = kmeans2(z, centres, iter=step, minit="matrix",
                                      check_finite=False)
            done += step
    return centres


def _best_of_restarts(z: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """The centres of the best (least squared distance) of :data:`FIT_RESTARTS` k-means
    fits, each seeded by k-means++."""
    best, best_inertia = None, math.inf
    for restart in range(FIT_RESTARTS):
        centres = _seeded(z, k, seed=seed + restart, iterations=FIT_ITERATIONS)
        inertia = float(np.square(vq(z, centres, check_finite=False)[1]).sum())
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    assert best is not None
    return best


def adjusted_rand(first: np.ndarray, second: np.ndarray) -> float:
    """The adjusted Rand index of two labelings (non-negative integer codes), as
    scikit-learn's ``adjusted_rand_score`` computes it, without its input checks: those
    took 1.2 of its 1.3 ms on 560 labels, and a choice of the number of segments compares up
    to 84 pairs of labelings (a quarter of the choice's time).

    >>> from sklearn.metrics import adjusted_rand_score
    >>> a, b = np.array([0, 0, 1, 1, 2, 2]), np.array([1, 1, 0, 0, 0, 2])
    >>> round(adjusted_rand(a, b), 6) == round(adjusted_rand_score(a, b), 6)
    True
    >>> adjusted_rand(np.zeros(4, int), np.zeros(4, int))  # one cluster each: identical
    1.0
    """
    codes = int(max(first.max(), second.max())) + 1
    table = np.bincount(first.astype(np.int64) * codes + second,
                        minlength=codes * codes).reshape(codes, codes)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) // 2).sum())

    index, rows, columns = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    total = len(first) * (len(first) - 1) / 2
    expected = rows * columns / total if total else 0.0
    top = (rows + columns) / 2
    if top == expected:  # both one cluster, both all singletons, or fewer than 2 labels
        return 1.0
    return (index - expected) / (top - expected)


def _stable_hash(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode("utf-8"))


def natural_units(vector: Mapping[str, float]) -> dict[str, float]:
    """A behaviour vector in natural units: ``log1p`` undone, tickets per visit rescaled.

    >>> natural_units({"log_orders_per_week": math.log1p(2.0), "purchase_share": 0.5})
    {'orders_per_week': 2.0, 'purchase_share': 0.5}
    """
    natural = {}
    for name, value in vector.items():
        if name == "log_tickets_per_visit":
            natural["tickets_per_visit"] = round(math.expm1(value) / 10.0, 10)
        elif name.startswith("log_"):
            natural[name[4:]] = round(math.expm1(value), 10)
        else:
            natural[name] = value
    return natural


def describe(centroid: Mapping[str, float], buyers_spend: float,
             one_day_share: float = 0.0) -> str:
    """A segment's centre in a marketer's words; ``one_day_share``: the share of its
    customers seen on one day only.

    How often a segment buys is read off its centre, unless most of its customers were seen
    on one day only: they have no rhythm yet, and the centre's orders per week is the
    shop's typical value filled in for them (see :meth:`Segmenter.refit`), so such a segment
    buys "one-time". On CDNOW, the real purchase history, two segments of 70-86% one-day
    buyers read "regular" (the typical repeat buyer's pace) while a segment of repeat
    buyers, 56% of whom bought again in the holdout against 19-29%, read "rare".

    >>> describe({"orders_per_week": 2.0, "spend_per_order": 15.0, "purchase_share": 0.7}, 40.0)
    'frequent small baskets'
    >>> describe({"orders_per_week": 0.1, "spend_per_order": 400.0, "purchase_share": 0.6}, 40.0)
    'big spenders, rare'
    >>> describe({"orders_per_week": 0.01, "purchase_share": 0.01, "carts_per_order": 3.0}, 40.0)
    'browsers who fill carts'
    >>> describe({"orders_per_week": 0.5, "spend_per_order": 15.0, "purchase_share": 1.0}, 40.0,
    ...          one_day_share=0.8)
    'one-time small baskets'
    """
    orders_per_week = centroid.get("orders_per_week", 0.0)
    share = centroid.get("purchase_share", 0.0)
    if share < 0.08 and orders_per_week < 0.15:
        label = "browsers who fill carts" if centroid.get("carts_per_order", 0.0) >= 1.5 \
            else "browsers"
    else:
        frequency = ("one-time" if one_day_share > ONE_TIME_MAJORITY else
                     "frequent" if orders_per_week >= 1.0 else
                     "regular" if orders_per_week >= 0.25 else "rare")
        spend = centroid.get("spend_per_order", 0.0)
        if buyers_spend and spend >= 1.8 * buyers_spend:
            label = f"big spenders, {frequency}"
        elif buyers_spend and spend <= 0.6 * buyers_spend:
            label = f"{frequency} small baskets"
        else:
            label = f"{frequency} buyers"
    if centroid.get("tickets_per_visit", 0.0) >= 0.1:
        label = f"support-heavy {label}"
    return label


#: How two segments with the same words differ, by the feature they differ in most.
_CONTRASTS = {
    "orders_per_week": ("more orders", "fewer orders"),
    "spend_per_order": ("bigger baskets", "smaller baskets"),
    "purchase_share": ("buy on more visits", "buy on fewer visits"),
    "views_per_visit": ("more views per visit", "fewer views per visit"),
    "carts_per_order": ("more cart adds", "fewer cart adds"),
    "days_between_visits": ("longer gaps", "shorter gaps"),
    "tickets_per_visit": ("more tickets", "fewer tickets"),
    "searches_per_view": ("more searches", "fewer searches"),
}


def describe_segments(centroids: Mapping[int, Mapping[str, float]],
                      reference: Mapping[str, float], buyers_spend: float,
                      one_day_shares: Mapping[int, float] | None = None) -> dict[int, str]:
    """A distinct label per segment: :func:`describe`, then, for segments that read the
    same, what sets each apart from the others of its words (relative to ``reference``).
    ``one_day_shares``: segment -> share of its customers seen on one day only.

    >>> labels = describe_segments(
    ...     {0: {"orders_per_week": 0.5, "spend_per_order": 40.0, "views_per_visit": 2.0},
    ...      1: {"orders_per_week": 0.5, "spend_per_order": 40.0, "views_per_visit": 9.0}},
    ...     reference={"views_per_visit": 4.0}, buyers_spend=40.0)
    >>> labels[0], labels[1]
    ('regular buyers (fewer views per visit)', 'regular buyers (more views per visit)')
    """
    shares = one_day_shares or {}
    words = {segment: describe(centroid, buyers_spend, shares.get(segment, 0.0))
             for segment, centroid in centroids.items()}
    labels = dict(words)
    for label in set(words.values()):
        same = sorted(segment for segment, word in words.items() if word == label)
        if len(same) < 2:
            continue
        for segment in same:
            others = [centroids[other] for other in same if other != segment]
            labels[segment] = f"{label} ({_contrast(centroids[segment], others, reference)})"
        if len({labels[segment] for segment in same}) < len(same):
            for rank, segment in enumerate(same, start=1):
                labels[segment] = f"{labels[segment]} #{rank}"
    return labels


def _contrast(centroid: Mapping[str, float], others: list[Mapping[str, float]],
              reference: Mapping[str, float]) -> str:
    def relative(values: Mapping[str, float], name: str) -> float:
        return math.log1p(max(values.get(name, 0.0), 0.0)) - math.log1p(
            max(reference.get(name, 0.0), 0.0))

    best_name, best_gap = "orders_per_week", 0.0
    for name in _CONTRASTS:
        gap = relative(centroid, name) - sum(relative(o, name) for o in others) / len(others)
        if abs(gap) > abs(best_gap):
            best_name, best_gap = name, gap
    more, less = _CONTRASTS[best_name]
    return more if best_gap >= 0 else less


class TenantSegments:
    """One :class:`Segmenter` per tenant, made on the tenant's first customer.

    >>> segments = TenantSegments(min_customers=10)
    >>> segments.assign("shop", {"purchase_share": 0.5})
    (None, None)
    """

    def __init__(self, **segmenter_options: int) -> None:
        self.segmenter_options = segmenter_options
        self.by_tenant: dict[str, Segmenter] = {}

    @property
    def example_count(self) -> int:
        return sum(s.example_count for s in self.by_tenant.values())

    @property
    def model_version(self) -> str:
        return f"segments-v3+{self.example_count}"

    def of(self, tenant: str) -> Segmenter:
        segmenter = self.by_tenant.get(tenant)
        if segmenter is None:
            segmenter = self.by_tenant[tenant] = Segmenter(**self.segmenter_options)
        return segmenter

    def learn(self, tenant: str, customer_id: str, vector: Mapping[str, float]) -> None:
        self.of(tenant).learn(customer_id, vector)

    def assign(self, tenant: str, vector: Mapping[str, float]) -> tuple[int | None, str | None]:
        """The customer's segment and its label (both ``None`` before the first fit)."""
        segmenter = self.by_tenant.get(tenant)
        if segmenter is None:
            return None, None
        segment = segmenter.assign(vector)
        return (None, None) if segment is None else (segment, segmenter.labels()[segment])

    def identity(self, tenant: str) -> str | None:
        """The tenant's segmenter's :attr:`Segmenter.identity` (``None`` before its first
        customer)."""
        segmenter = self.by_tenant.get(tenant)
        return None if segmenter is None else segmenter.identity

    def ids(self, tenant: str) -> tuple[int, ...]:
        """The tenant's segments now (none before the first fit)."""
        segmenter = self.by_tenant.get(tenant)
        return () if segmenter is None else tuple(segmenter.centres)

    def forget(self, tenant: str, customer_id: str) -> None:
        segmenter = self.by_tenant.get(tenant)
        if segmenter is not None:
            segmenter.forget(customer_id)

    def metrics_dict(self) -> dict[str, object]:
        return {
            "model_version": self.model_version,
            "examples": self.example_count,
            "segments": {tenant: len(s.centres) for tenant, s in self.by_tenant.items()},
        }
