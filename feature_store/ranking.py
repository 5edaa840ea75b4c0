"""Where a value stands in a tenant's ranking (the CLV percentile the alert rules read),
from a sketch read in the round trip that applies a batch.

The batch's CLVs are computed after that round trip, so the store reads what percentiles
need beforehand: the ranking's size, its highest ``top`` scores exactly, and its scores at
evenly spaced ranks. A value among the highest is placed exactly; below them, by
interpolating the spaced ranks (within one rank in ``points`` of the population).

>>> sketch = RankingSketch(population=4, highest=(9.0, 7.0, 5.0, 1.0), spaced=())
>>> sketch.percentile(7.0), sketch.percentile(8.0), sketch.percentile(0.5)
((0.8, 5), (0.8, 5), (0.2, 5))

A customer already ranked counts once, with the new value:

>>> sketch.percentile(10.0, previous=9.0)
(1.0, 4)
>>> RankingSketch(population=0, highest=(), spaced=()).percentile(3.0)
(1.0, 1)
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from feature_store.client import PipelineScript
from feature_store.keys import ranking_key

#: The highest scores read exactly: a top percentile of a population up to 100 times this is
#: placed exactly.
TOP = 256
#: Evenly spaced ranks read below them.
POINTS = 64

SKETCH_SCRIPT = PipelineScript(
    resources.files("feature_store").joinpath("lua", "ranking_sketch.lua").read_text())


@dataclass(frozen=True)
class RankingSketch:
    """A ranking's size, its highest scores (highest first) and its scores at evenly spaced
    ranks (lowest first, empty when the highest are all of it)."""

    population: int
    highest: tuple[float, ...]
    spaced: tuple[float, ...]

    def percentile(self, value: float, previous: float | None = None
                   ) -> tuple[float | None, int]:
        """The share of the ranking at or below ``value`` once it holds ``value`` (in place
        of ``previous``, the same member's score before), and the ranking's size then."""
        below = self._at_or_below(value)
        population = self.population
        if previous is not None and population:
            population -= 1
            below -= previous <= value
        population += 1
        return min(1.0, (below + 1) / population), population

    def _at_or_below(self, value: float) -> float:
        if not self.population:
            return 0
        # How many of the highest (highest first) are above value.
        above = bisect.bisect_left(self.highest, -value, key=operator.neg)
        if above < len(self.highest) or not self.spaced:
            return self.population - above
        # Below every one of the highest: interpolate the evenly spaced ranks.
        n, points = self.population, len(self.spaced)
        rank = bisect.bisect_right(self.spaced, value)  # spaced points at or below value
        if rank == 0:
            return 0
        if rank == points:
            return n - len(self.highest)
        low, high = self.spaced[rank - 1], self.spaced[rank]
        rank_low = (rank - 1) * (n - 1) / (points - 1)
        rank_high = rank * (n - 1) / (points - 1)
        share = 0.0 if high == low else (value - low) / (high - low)
        return min(n - len(self.highest), rank_low + 1 + share * (rank_high - rank_low))


def queue_sketch(pipe: Any, tenant: str, score: str = "clv") -> None:
    SKETCH_SCRIPT.queue(pipe, keys=[ranking_key(tenant, score)], args=[TOP, POINTS])


def sketch_from(reply: Any) -> RankingSketch:
    population, highest, spaced = reply
    return RankingSketch(int(population), tuple(float(s) for s in highest),
                         tuple(float(s) for s in spaced))
