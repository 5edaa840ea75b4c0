"""Item-item co-occurrence ("bought together") in bounded memory."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from operator import itemgetter

__all__ = ["CoOccurrence"]


class CoOccurrence:
    """Weighted counts of items interacted with together, keeping the strongest neighbours.

    Each item keeps at most ``max_neighbours`` neighbours (when it reaches twice that, the
    weakest are dropped) and at most ``max_items`` items are tracked (least recently updated
    dropped first), so memory is bounded whatever the traffic.

    Parameters
    ----------
    max_neighbours
        Neighbours kept per item.
    max_items
        Items tracked.

    Attributes
    ----------
    neighbours
        Item -> {neighbour: weight}, least recently updated first.

    Examples
    --------
    >>> together = CoOccurrence()
    >>> together.update("tent", ["stove", "mat"], weight=5.0)
    >>> together.update("tent", ["stove"], weight=1.0)
    >>> together.related(["stove"], n=2)
    [('tent', 1.0)]
    >>> together.related(["tent"], n=2)
    [('stove', 1.0), ('mat', 0.8333333333333334)]
    """

    def __init__(self, *, max_neighbours: int = 50, max_items: int = 100_000) -> None:
        self.max_neighbours = max_neighbours
        self.max_items = max_items
        self.neighbours: OrderedDict[str, dict[str, float]] = OrderedDict()

    def update(self, item: str, context: Iterable[str], weight: float = 1.0) -> None:
        """Count ``item`` together with each (distinct) item of ``context``, both ways."""
        for other in set(context):
            if other != item:
                self._add(item, other, weight)
                self._add(other, item, weight)

    def _add(self, item: str, other: str, weight: float) -> None:
        row = self.neighbours.get(item)
        if row is None:
            row = self.neighbours[item] = {}
            if len(self.neighbours) > self.max_items:
                self.neighbours.popitem(last=False)
        else:
            self.neighbours.move_to_end(item)
        row[other] = row.get(other, 0.0) + weight
        if len(row) >= 2 * self.max_neighbours:
            strongest = sorted(row.items(), key=lambda kv: -kv[1])[: self.max_neighbours]
            self.neighbours[item] = dict(strongest)

    def related(self, context: Sequence[str], n: int = 50) -> list[tuple[str, float]]:
        """Items most often seen with ``context``, as ``(item, score in [0, 1])``.

        Each context item's row is normalised by its strongest neighbour, and earlier context
        items (the most recent first) weigh more.
        """
        totals: dict[str, float] = {}
        for rank, item in enumerate(context):
            row = self.neighbours.get(item)
            if not row:
                continue
            strongest = max(row.values())
            decay = 1.0 / (1 + rank)
            for other, weight in row.items():
                totals[other] = totals.get(other, 0.0) + decay * weight / strongest
        for item in context:  # the context itself is no recommendation
            totals.pop(item, None)
        if not totals:
            return []
        best = max(totals.values())
        # nlargest is sorted(..., reverse=True)[:n], ties in insertion order as before.
        ranked = heapq.nlargest(n, totals.items(), key=itemgetter(1))
        return [(item, score / best) for item, score in ranked]
