"""Revenue forecasts: each worker publishes its own, the API adds them up.

A worker forecasts the revenue of the purchases on its partitions (its share of each tenant),
so each publishes its series under its own name in the tenant's hash
(:func:`~feature_store.keys.forecast_key`) with the telemetry, and a reader sums the workers'
points and closed buckets by start time. A worker's entry older than ``STALE_MS`` (a worker
gone) is left out.

Payload of one worker and tenant (times in ms)::

    {"published_at": ms, "series": {"<category>|<granularity>": {
        "status", "as_of", "buckets_learnt", "interval_level", "mape", "mase", "coverage",
        "points": [[start, revenue, lower, upper], ...],
        "history": [[start, revenue, forecast or null], ...]}}}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from feature_store.keys import forecast_key
from schemas.api import ForecastActual, ForecastPoint, RevenueForecast

#: A worker's forecasts older than this are of a worker that stopped.
STALE_MS = 10 * 60_000


def _at(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


def queue_forecasts(pipe: Any, tenant: str, worker: str,
                    series: Mapping[str, Mapping[str, Any]], at_ms: int) -> None:
    pipe.hset(forecast_key(tenant), worker,
              orjson.dumps({"published_at": at_ms, "series": series}))


async def read_forecast(redis: Any, tenant: str, *, category: str, granularity: str,
                        horizon: int, now_ms: int) -> RevenueForecast | None:
    """The tenant's forecast of ``category`` (``"all"``: every purchase) per ``granularity``,
    ``horizon`` buckets ahead (at most what the workers published); None if no worker has
    that series."""
    raw: Mapping[bytes, bytes] = await redis.hgetall(forecast_key(tenant))
    found = []
    for value in raw.values():
        payload = orjson.loads(value)
        entry = payload.get("series", {}).get(f"{category}|{granularity}")
        if entry is not None and now_ms - payload.get("published_at", 0) <= STALE_MS:
            found.append(entry)
    if not found:
        return None
    points: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for entry in found:
        for start, revenue, lower, upper in entry["points"][:horizon]:
            point = points[start]
            point[0] += revenue
            point[1] += lower
            point[2] += upper
    history: dict[int, list[float | None]] = {}
    for entry in found:
        for start, revenue, forecast in entry["history"]:
            total = history.setdefault(start, [0.0, 0.0])
            total[0] = (total[0] or 0.0) + revenue
            total[1] = None if forecast is None or total[1] is None else total[1] + forecast
    leader = max(found, key=lambda entry: entry["buckets_learnt"])
    ready = all(entry["status"] == "ready" for entry in found)
    return RevenueForecast(
        category=category, granularity=granularity,  # type: ignore[arg-type]
        status="ready" if ready else "warming_up",
        as_of=_at(min(entry["as_of"] for entry in found)),
        buckets_learnt=leader["buckets_learnt"], interval_level=leader["interval_level"],
        mape=leader["mape"], mase=leader["mase"], coverage=leader["coverage"],
        workers=len(found),
        points=[ForecastPoint(start=_at(start), revenue=revenue, lower=lower, upper=upper)
                for start, (revenue, lower, upper) in sorted(points.items())] if ready else [],
        history=[ForecastActual(start=_at(start), revenue=revenue or 0.0, forecast=forecast)
                 for start, (revenue, forecast) in sorted(history.items())])
