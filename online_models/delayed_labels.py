"""Delayed labels resolved in event time: snapshots at activity, labels when the watermark says so.

A churn or CLV label is only known some horizon *after* the moment we want to predict at. So a
*snapshot* of the customer's profile is kept at each activity and resolved later:

* :class:`ChurnLabeler` -- activity before the snapshot's deadline resolves it at once as
  ``0`` (active again); a watermark past the deadline with no activity resolves it as ``1``.
* :class:`WindowLabeler` -- purchases in ``[taken_at, deadline)`` are summed into the
  snapshot, which resolves when the watermark passes the deadline (label = count and spend).

Two refinements keep the training data like the data we predict on:

* activity within ``merge_within_ms`` of the latest activity snapshot *replaces* it instead of
  resolving it (a click 5 s after a click is one visit, not proof of retention);
* every ``review_every_ms`` of silence (up to ``max_review_age_ms``) a *review* snapshot is
  taken at the review time, so the model also learns from customers who have been silent for a
  while -- exactly the customers a churn score matters for.

A label known early (activity before the deadline) is by default *released* only when the
watermark reaches its deadline, like the ``1`` labels are. Releasing ``0`` labels at once
would train the model on a censored sample -- recent snapshots could only ever be ``0`` so far
-- which teaches it that "recent" or "long tenure" means "stays" (on CDNOW this alone
inverts the ranking). ``release_at_deadline=False`` releases them immediately instead.

Everything is driven by ``at_ms`` arguments and a monotone watermark; nothing reads a clock.
Pending snapshots sit in a heap by deadline (stale entries are skipped lazily).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from online_models.features import slim_profile

__all__ = ["ChurnLabeler", "DelayedLabelModel", "Snapshot", "WindowLabeler"]


@dataclass(slots=True)
class Snapshot:
    """A customer's profile at ``taken_at_ms``, waiting for (or carrying) its label.

    ``label`` is ``None`` while pending. For churn it becomes ``1.0`` (churned) or ``0.0``; for
    a window it becomes the number of purchases in the window, with ``spend`` their total.
    """

    customer_id: str
    profile: dict[str, Any]
    taken_at_ms: int
    deadline_ms: int
    kind: str = "activity"
    purchases: int = 0
    spend: float = 0.0
    label: float | None = None
    resolved_at_ms: int | None = None
    dead: bool = False


class _SnapshotBook:
    """Pending snapshots by customer and by deadline, plus the review schedule."""

    def __init__(
        self,
        *,
        horizon_ms: int,
        merge_within_ms: int = 0,
        review_every_ms: int | None = None,
        max_review_age_ms: int = 0,
        release_at_deadline: bool = True,
    ) -> None:
        self.horizon_ms = horizon_ms
        self.release_at_deadline = release_at_deadline
        self.merge_within_ms = merge_within_ms
        self.review_every_ms = review_every_ms
        self.max_review_age_ms = max_review_age_ms
        self.watermark_ms: int | None = None
        self._pending: dict[str, list[Snapshot]] = {}
        self._n_pending = 0
        self._latest: dict[str, Snapshot] = {}  # latest activity snapshot per customer
        self._deadlines: list[tuple[int, int, Snapshot]] = []
        self._reviews: list[tuple[int, int, Snapshot]] = []  # (review at, seq, base snapshot)
        self._seq = 0
        self._cleanup_at = 1024

    @property
    def n_pending(self) -> int:
        """How many snapshots wait for their label (kept as a count: models report it with
        every score they serve before they are ready)."""
        return self._n_pending

    def _push(self, snapshot: Snapshot) -> None:
        self._seq += 1
        self._pending.setdefault(snapshot.customer_id, []).append(snapshot)
        self._n_pending += 1
        heapq.heappush(self._deadlines, (snapshot.deadline_ms, self._seq, snapshot))

    def _take(self, customer_id: str, profile: Mapping[str, Any], at_ms: int, kind: str) -> None:
        snapshot = Snapshot(
            customer_id, slim_profile(profile), at_ms, at_ms + self.horizon_ms, kind
        )
        self._push(snapshot)
        if kind == "activity":
            self._latest[customer_id] = snapshot
            base = snapshot
        else:
            base = self._latest[customer_id]
        if self.review_every_ms:
            review_at = at_ms + self.review_every_ms
            if review_at - base.taken_at_ms <= self.max_review_age_ms:
                self._seq += 1
                heapq.heappush(self._reviews, (review_at, self._seq, base))

    def _resolve(self, snapshot: Snapshot, label: float, at_ms: int, out: list[Snapshot]) -> None:
        snapshot.label = label
        snapshot.resolved_at_ms = at_ms
        if self.release_at_deadline and at_ms < snapshot.deadline_ms:
            # Known early, released with the deadline: see the module docstring.
            self._unlist(snapshot)
        else:
            self._drop(snapshot)
            out.append(snapshot)

    def _drop(self, snapshot: Snapshot) -> None:
        snapshot.dead = True
        self._unlist(snapshot)

    def _unlist(self, snapshot: Snapshot) -> None:
        pending = self._pending.get(snapshot.customer_id)
        if pending is not None and snapshot in pending:
            pending.remove(snapshot)
            self._n_pending -= 1
            if not pending:
                del self._pending[snapshot.customer_id]

    def _same_visit(self, snapshot: Snapshot, at_ms: int) -> bool:
        return at_ms - snapshot.taken_at_ms < max(self.merge_within_ms, 1)

    def _label_at_deadline(self, snapshot: Snapshot) -> float:
        raise NotImplementedError

    def advance_watermark(self, watermark_ms: int) -> list[Snapshot]:
        """Resolve what the watermark makes certain; take due review snapshots.

        The watermark is monotone: a smaller value than seen before changes nothing.
        """
        if self.watermark_ms is not None and watermark_ms <= self.watermark_ms:
            return []
        self.watermark_ms = watermark_ms
        out: list[Snapshot] = []
        deadlines, reviews = self._deadlines, self._reviews
        # Deadlines and reviews in time order: a review taken now may itself expire in this call.
        while True:
            next_deadline = deadlines[0][0] if deadlines else None
            next_review = reviews[0][0] if reviews else None
            if (
                next_review is not None
                and next_review <= watermark_ms
                and (next_deadline is None or next_review < next_deadline)
            ):
                review_at, _, base = heapq.heappop(reviews)
                if self._latest.get(base.customer_id) is base:  # still silent since `base`
                    self._take(base.customer_id, base.profile, review_at, "review")
            elif next_deadline is not None and next_deadline <= watermark_ms:
                deadline, _, snapshot = heapq.heappop(deadlines)
                if snapshot.dead:
                    continue
                if snapshot.label is None:
                    self._resolve(snapshot, self._label_at_deadline(snapshot), deadline, out)
                else:  # resolved early, held back until now
                    snapshot.dead = True
                    out.append(snapshot)
            else:
                break
        self._forget_finished()
        return out

    def _forget_finished(self) -> None:
        # Customers with nothing pending and no review ahead need no memory here; sweeping only
        # when the map has doubled keeps the cost amortised O(1) per call.
        if len(self._latest) < self._cleanup_at:
            return
        cutoff = (self.watermark_ms or 0) - self.max_review_age_ms
        for customer_id in [
            c for c, s in self._latest.items() if c not in self._pending and s.taken_at_ms < cutoff
        ]:
            del self._latest[customer_id]
        self._cleanup_at = max(1024, 2 * len(self._latest))

    def forget(self, customer_id: str) -> None:
        """Erase a customer: drop their snapshots (pending or held back) and review schedule."""
        for _, _, snapshot in self._deadlines:
            if snapshot.customer_id == customer_id and not snapshot.dead:
                self._drop(snapshot)
        self._latest.pop(customer_id, None)


class ChurnLabeler(_SnapshotBook):
    """Churn labels: ``0`` on activity before the deadline, ``1`` when the watermark passes it.

    Examples
    --------
    >>> day = 86_400_000
    >>> labeler = ChurnLabeler(horizon_ms=30 * day, release_at_deadline=False)
    >>> labeler.observe_activity("c1", {"orders": 1}, at_ms=0)
    []
    >>> [s.label for s in labeler.observe_activity("c1", {"orders": 2}, at_ms=10 * day)]
    [0.0]
    >>> labeler.advance_watermark(39 * day)
    []
    >>> [(s.taken_at_ms // day, s.label) for s in labeler.advance_watermark(40 * day)]
    [(10, 1.0)]

    By default a label known early waits for its deadline before it is released:

    >>> labeler = ChurnLabeler(horizon_ms=30 * day)
    >>> _ = labeler.observe_activity("c1", {"orders": 1}, at_ms=0)
    >>> labeler.observe_activity("c1", {"orders": 2}, at_ms=10 * day)
    []
    >>> [(s.taken_at_ms // day, s.label) for s in labeler.advance_watermark(30 * day)]
    [(0, 0.0)]
    """

    def _label_at_deadline(self, snapshot: Snapshot) -> float:
        return 1.0

    def observe_activity(
        self, customer_id: str, profile: Mapping[str, Any], at_ms: int
    ) -> list[Snapshot]:
        """Record activity at ``at_ms``; returns the snapshots it resolves."""
        out: list[Snapshot] = []
        latest = self._latest.get(customer_id)
        for snapshot in list(self._pending.get(customer_id, ())):
            if snapshot.deadline_ms <= at_ms:  # expired before this activity (watermark lags)
                self._resolve(snapshot, 1.0, snapshot.deadline_ms, out)
            elif snapshot.taken_at_ms <= at_ms:
                if snapshot is latest and self._same_visit(snapshot, at_ms):
                    self._drop(snapshot)  # same visit: replaced by the newer snapshot below
                else:
                    self._resolve(snapshot, 0.0, at_ms, out)
        self._take(customer_id, profile, at_ms, "activity")
        return out


class WindowLabeler(_SnapshotBook):
    """Window labels: purchases and spend in ``[taken_at, taken_at + horizon)``.

    Examples
    --------
    >>> day = 86_400_000
    >>> labeler = WindowLabeler(horizon_ms=90 * day)
    >>> labeler.observe_activity("c1", {"orders": 1}, at_ms=0)
    []
    >>> labeler.observe_activity("c1", {"orders": 2}, at_ms=30 * day, purchases=1, spend=25.0)
    []
    >>> [(s.taken_at_ms // day, s.label, s.spend) for s in labeler.advance_watermark(90 * day)]
    [(0, 1.0, 25.0)]
    """

    def _label_at_deadline(self, snapshot: Snapshot) -> float:
        return float(snapshot.purchases)

    def observe_activity(
        self,
        customer_id: str,
        profile: Mapping[str, Any],
        at_ms: int,
        *,
        purchases: int = 0,
        spend: float = 0.0,
    ) -> list[Snapshot]:
        """Record activity (``purchases`` orders worth ``spend``) at ``at_ms``."""
        out: list[Snapshot] = []
        latest = self._latest.get(customer_id)
        for snapshot in list(self._pending.get(customer_id, ())):
            if snapshot.deadline_ms <= at_ms:
                self._resolve(snapshot, float(snapshot.purchases), snapshot.deadline_ms, out)
            elif snapshot.taken_at_ms <= at_ms:
                if snapshot is latest and self._same_visit(snapshot, at_ms):
                    self._drop(snapshot)  # the newer snapshot's profile already holds this
                else:
                    snapshot.purchases += purchases
                    snapshot.spend += spend
        self._take(customer_id, profile, at_ms, "activity")
        return out


class DelayedLabelModel:
    """What a model learning from delayed labels does besides its own maths: resolve
    snapshots by watermark, learn each resolved one (evaluated first), forget a customer,
    count examples into its version. Subclasses set ``labeler``, ``featurizer`` and ``name``
    and implement :meth:`_learn_one`.
    """

    name: str
    labeler: _SnapshotBook
    featurizer: Any  # Callable[[Mapping[str, Any], int], dict[str, float]]
    example_count: int = 0
    #: (error, event time) of each example learnt since :meth:`take_errors`, scored before
    #: it was learnt: what drift detection watches.
    _errors: list[tuple[float, int]] | None = None

    @property
    def model_version(self) -> str:
        return f"{self.name}-v1+{self.example_count}"

    def advance_watermark(self, watermark_ms: int) -> int:
        """Resolve the snapshots whose deadline the watermark passed; learn them.
        Returns examples learnt."""
        return self._learn(self.labeler.advance_watermark(watermark_ms))

    def forget(self, customer_id: str) -> None:
        """Erase a customer's pending snapshots (the learned weights keep no per-customer data)."""
        self.labeler.forget(customer_id)

    def _learn(self, snapshots: Iterable[Snapshot]) -> int:
        n = 0
        if self._errors is None:
            self._errors = []
        for snapshot in snapshots:
            error = self._learn_one(snapshot,
                                    self.featurizer(snapshot.profile, snapshot.taken_at_ms))
            self._errors.append((error, snapshot.resolved_at_ms or snapshot.deadline_ms))
            n += 1
        self.example_count += n
        return n

    def take_errors(self) -> list[tuple[float, int]]:
        """The (error, event time) of each example learnt since the last call, oldest first."""
        errors, self._errors = self._errors or [], []
        return errors

    def _learn_one(self, snapshot: Snapshot, features: dict[str, float]) -> float:
        """Score the resolved snapshot into the online metrics, then learn its label; answer
        the error it was scored with."""
        raise NotImplementedError
