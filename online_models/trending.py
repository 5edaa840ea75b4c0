"""Trending items: popularity with exponential decay in event time."""

from __future__ import annotations

import heapq
from collections.abc import Collection

__all__ = ["DecayedPopularity"]


class DecayedPopularity:
    """Item popularity where an interaction's weight halves every ``halflife_ms`` of event time.

    All items decay by the same factor, so the ranking never changes by time passing alone.
    Scores are therefore stored relative to a reference time (``weight * 2**((t - ref) / h)``)
    and updated in O(1); the reference moves forward (rescaling every score) only when the
    numbers would grow too large.

    Parameters
    ----------
    halflife_ms
        Event-time half-life of an interaction's weight.
    max_items
        When more items are tracked, the least popular half is dropped.
    refresh_every
        The cached top list is rebuilt after this many updates, or on any change while every
        item fits in the cache (a slightly stale order is fine for a fallback; rebuilding
        costs O(items)).
    cache_size
        Length of the cached top list.

    Attributes
    ----------
    scores
        Item -> popularity relative to ``reference_ms``.
    last_at_ms
        Latest event time seen.

    Examples
    --------
    >>> day = 86_400_000
    >>> trending = DecayedPopularity(halflife_ms=day)
    >>> trending.add("old-hit", 4.0, at_ms=0)
    >>> trending.add("new", 3.0, at_ms=day)
    >>> trending.top(2)
    [('new', 3.0), ('old-hit', 2.0)]
    >>> trending.top(2, exclude={"new"})
    [('old-hit', 2.0)]
    """

    def __init__(
        self,
        *,
        halflife_ms: int = 7 * 86_400_000,
        max_items: int = 200_000,
        refresh_every: int = 100,
        cache_size: int = 500,
    ) -> None:
        self.halflife_ms = halflife_ms
        self.max_items = max_items
        self.refresh_every = refresh_every
        self.cache_size = cache_size
        self.scores: dict[str, float] = {}
        self.reference_ms: int | None = None
        self.last_at_ms: int | None = None
        self._cache: list[tuple[str, float]] = []
        self._stale = 0

    def add(self, item: str, weight: float, at_ms: int) -> None:
        if self.reference_ms is None:
            self.reference_ms = at_ms
        exponent = (at_ms - self.reference_ms) / self.halflife_ms
        if exponent > 60:  # rebase before 2**exponent loses precision against old scores
            self._rebase(at_ms)
            exponent = 0.0
        self.scores[item] = self.scores.get(item, 0.0) + weight * 2.0**exponent
        self.last_at_ms = at_ms if self.last_at_ms is None else max(self.last_at_ms, at_ms)
        self._stale += 1
        if len(self.scores) > self.max_items:
            keep = heapq.nlargest(self.max_items // 2, self.scores.items(), key=lambda kv: kv[1])
            self.scores = dict(keep)
            self._stale = self.refresh_every

    def _rebase(self, at_ms: int) -> None:
        assert self.reference_ms is not None
        factor = 2.0 ** (-(at_ms - self.reference_ms) / self.halflife_ms)
        self.scores = {
            item: score * factor for item, score in self.scores.items() if score * factor > 1e-12
        }
        self.reference_ms = at_ms
        self._stale = self.refresh_every

    def score(self, item: str) -> float:
        """Decayed popularity of ``item`` as of the latest event time."""
        return self.scores.get(item, 0.0) * self._now_factor()

    def _now_factor(self) -> float:
        if self.reference_ms is None or self.last_at_ms is None:
            return 1.0
        return 2.0 ** (-(self.last_at_ms - self.reference_ms) / self.halflife_ms)

    def top(self, n: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The ``n`` most popular items not in ``exclude``, as ``(item, decayed score)``."""
        small = len(self.scores) <= self.cache_size  # then a rebuild is as cheap as a lookup
        if self._stale >= self.refresh_every or not self._cache or (small and self._stale):
            self._cache = heapq.nlargest(self.cache_size, self.scores.items(), key=lambda kv: kv[1])
            self._stale = 0
        factor = self._now_factor()
        picked = []
        for item, score in self._cache:
            if item not in exclude:
                picked.append((item, score * factor))
                if len(picked) == n:
                    return picked
        if len(self._cache) < len(self.scores):  # exclusions ate the cache
            picked = [
                (item, score * factor)
                for item, score in heapq.nlargest(
                    n + len(exclude), self.scores.items(), key=lambda kv: kv[1]
                )
                if item not in exclude
            ]
        return picked[:n]
