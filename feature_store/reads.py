"""The feature store's read side, for the API: one customer's profile and ranked lists."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from feature_store.client import AsyncRedis, PipelineScript, execute_pipeline
from feature_store.forecasts import read_forecast
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    METRICS_KEY,
    MODELS_HISTORY_KEY,
    MODELS_KEY,
    THROUGHPUT_KEY,
    CustomerKeys,
    customers_key,
    erasure_receipt_key,
    ranking_key,
    segments_key,
)
from feature_store.replies import TOP_CATEGORIES, text
from feature_store.tickets import read_customer_tickets, read_ticket
from schemas.api import (
    ModelOut,
    ModelSnapshot,
    PipelineCounter,
    RevenueForecast,
    SegmentOut,
    ThroughputSample,
)
from schemas.profile import (
    CategoryWeight,
    CustomerFeatures,
    CustomerProfile,
    CustomerScores,
    Recommendation,
    ScoreStatus,
    Ticket,
)
from schemas.records import Alert, Contribution

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)

_INT_FEATURES = ("orders", "items_bought", "views", "product_views", "cart_adds", "cart_removes",
                 "checkouts_started", "sessions", "searches", "tickets_total", "open_tickets",
                 "active_days")
_TIME_FEATURES = ("first_seen_at", "last_seen_at", "last_order_at")


def from_ms(value: bytes | str | int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _drift_ms(value: float | None) -> int | None:
    return int(value) if value is not None else None


def _float(value: bytes | None) -> float | None:
    return float(value) if value is not None else None


def _status(value: bytes | None) -> ScoreStatus | None:
    return ScoreStatus.model_validate_json(value) if value is not None else None


#: Reads one customer's profile keys in one reply (one reply to parse instead of three: the
#: client's cost per reply is most of the API's Redis time).
PROFILE_SCRIPT = PipelineScript(
    resources.files("feature_store").joinpath("lua", "read_profile.lua").read_text())


def queue_profile_reads(pipe: Any, tenant: str, customer_id: str, *,
                        segments: bool = True) -> None:
    """Queue the read of one customer's profile on ``pipe`` (a caller may share the round
    trip with commands of its own), and of the tenant's segments unless the caller has them
    (see :func:`current_segment`); decode their replies with :func:`profile_from_replies`.
    Run the pipeline with :func:`execute_reads` (it loads the script if Redis lacks it)."""
    keys = CustomerKeys(tenant, customer_id)
    PROFILE_SCRIPT.queue(pipe, [keys.profile, keys.key("categories"), keys.key("recent")])
    if segments:
        pipe.hgetall(segments_key(tenant))


async def execute_reads(redis: AsyncRedis, fill: Callable[[Any], None]) -> list[Any]:
    """Run a pipeline that ``fill`` fills, :func:`queue_profile_reads` among its commands.
    After a Redis restart whatever else ``fill`` queued runs twice (for the API: one
    request's rate-limit count)."""
    return await execute_pipeline(redis, fill, [PROFILE_SCRIPT])


def profile_from_replies(tenant: str, customer_id: str, replies: Sequence[Any],
                         segments: PublishedSegments | None = None
                         ) -> CustomerProfile | None:
    """The profile from the replies of :func:`queue_profile_reads` (``None``: no customer);
    ``segments``: the tenant's, when the caller had them (and did not read them)."""
    if segments is None:
        (flat_fields, flat_categories, recent), raw_segments = replies
        segments = PublishedSegments.from_raw(raw_segments)
    else:
        (flat_fields, flat_categories, recent), = replies
    if not flat_fields:
        return None
    fields = dict(zip(flat_fields[::2], flat_fields[1::2], strict=True))
    categories = [(name, float(weight))
                  for name, weight in zip(flat_categories[::2], flat_categories[1::2],
                                          strict=True)]
    return profile_from_raw(tenant, customer_id, fields, categories, recent, segments)


@dataclass(frozen=True)
class PublishedSegments:
    """A tenant's segments as a worker last published them: each id's label, and the
    segmenter they are of (see :func:`current_segment`)."""

    labels: Mapping[int, str]
    segmenter: str | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[bytes, bytes]) -> PublishedSegments:
        """From the published hash (id -> JSON)."""
        records = [orjson.loads(value) for value in raw.values()]
        return cls({int(record["segment"]): record["label"] for record in records},
                   records[0].get("segmenter") if records else None)


def current_segment(segment: int | None, label: str | None, segmenter: str | None,
                    published: PublishedSegments) -> tuple[int | None, str | None]:
    """A customer's segment and label as their segmenter's segments are now.

    A customer's segment is stored when they are scored, with its label at that moment. A
    refit keeps a segment's id while its centre moves, but its words may change with it
    ("regular buyers" becomes "one-time buyers"), and a refit to fewer segments ends some
    ids. Replaying CDNOW through the segmenter left 65% of the customers with a label their
    segment no longer had. So the label served is the segment's now, and a customer whose
    segment is gone has none until their next score. Each worker segments the customers it
    sees with a segmenter of its own (``segmenter`` names it): what another one published
    says nothing of this customer's segment, so the stored one is served, as it is before
    any segments are published.

    >>> now = PublishedSegments({2: "one-time buyers"}, segmenter="a")
    >>> current_segment(2, "regular buyers", "a", now)
    (2, 'one-time buyers')
    >>> current_segment(4, "rare buyers", "a", now)
    (None, None)
    >>> current_segment(2, "rare buyers", "b", now)
    (2, 'rare buyers')
    >>> current_segment(2, "rare buyers", "a", PublishedSegments({}))
    (2, 'rare buyers')
    """
    if segment is None or not published.labels or published.segmenter != segmenter:
        return segment, label
    now = published.labels.get(segment)
    return (None, None) if now is None else (segment, now)


def profile_from_raw(
    tenant: str,
    customer_id: str,
    fields: dict[bytes, bytes],
    categories: list[tuple[bytes, float]],
    recent: list[bytes],
    segments: PublishedSegments,
) -> CustomerProfile:
    """Decode the raw Redis values of one customer into the public profile (``segments``:
    the tenant's now, see :func:`current_segment`)."""
    text = {k.decode(): v for k, v in fields.items()}
    counts = {name: int(text.get(name, 0)) for name in _INT_FEATURES}
    revenue = int(text.get("revenue_cents", 0)) / 100
    total_weight = sum(weight for _, weight in categories) or 1.0
    features = CustomerFeatures(
        **counts,
        revenue=revenue,
        avg_order_value=round(revenue / counts["orders"], 2) if counts["orders"] else 0.0,
        **{name: from_ms(text.get(name)) for name in _TIME_FEATURES},
        category_affinity=[
            CategoryWeight(category=name.decode(), weight=round(weight / total_weight, 4))
            for name, weight in categories[:TOP_CATEGORIES]
        ],
        recent_products=[product.decode() for product in recent],
    )
    segment, segment_label = current_segment(
        int(text["segment"]) if "segment" in text else None,
        text["segment_label"].decode() if "segment_label" in text else None,
        text["segmenter"].decode() or None if "segmenter" in text else None, segments)
    scores = CustomerScores(
        churn_probability=_float(text.get("churn_probability")),
        churn_status=_status(text.get("churn_status")),
        segment=segment,
        segment_label=segment_label,
        clv=_float(text.get("clv")),
        clv_status=_status(text.get("clv_status")),
        sentiment=_float(text.get("sentiment")),
        anomaly_score=_float(text.get("anomaly_score")),
        scored_at=from_ms(text.get("scored_at")),
    )
    explanation = text.get("churn_explanation")
    return CustomerProfile(
        customer_id=customer_id,
        tenant=tenant,
        features=features,
        scores=scores,
        churn_explanation=[Contribution(**item) for item in orjson.loads(explanation)]
        if explanation else [],
        model_version=text["model_version"].decode() if "model_version" in text else None,
        updated_at=from_ms(text.get("updated_at")),
    )


class ProfileReader:
    """Reads for the API; a handful of commands per request in one round trip."""

    def __init__(self, *, redis: AsyncRedis) -> None:
        self.redis = redis

    async def profile(self, tenant: str, customer_id: str) -> CustomerProfile | None:
        replies = await execute_reads(
            self.redis, lambda pipe: queue_profile_reads(pipe, tenant, customer_id))
        return profile_from_replies(tenant, customer_id, replies)

    async def tickets(self, tenant: str, customer_id: str) -> list[Ticket] | None:
        """A customer's tickets, open first (None: no such customer)."""
        tickets = await read_customer_tickets(self.redis, tenant, customer_id)
        if not tickets and not await self.redis.exists(CustomerKeys(tenant, customer_id).profile):
            return None
        return tickets

    async def ticket(self, tenant: str, ticket_id: str) -> Ticket | None:
        return await read_ticket(self.redis, tenant, ticket_id)

    async def recommendations(self, tenant: str, customer_id: str) -> list[Recommendation] | None:
        raw = await self.redis.get(CustomerKeys(tenant, customer_id).recos)
        if raw is None:
            return None
        return [Recommendation(**item) for item in orjson.loads(raw)]

    async def ranked(self, tenant: str, score: str, limit: int) -> list[tuple[str, float]]:
        """Customers with the highest ``score`` first (e.g. churn probability)."""
        rows: list[Any] = await self.redis.zrevrange(ranking_key(tenant, score), 0, limit - 1,
                                                     withscores=True)
        return [(text(member), float(value)) for member, value in rows]

    async def top_profiles(self, tenant: str, score: str, limit: int
                           ) -> list[tuple[float, CustomerProfile]]:
        """The ``limit`` customers with the highest ``score`` and their profiles.

        The workers keep the rankings to current customers; should one still list a customer
        whose profile is gone (erased while a score was being written), it is passed over
        and the next one taken, so ``limit`` rows come back whenever as many customers are
        ranked."""
        found: list[tuple[float, CustomerProfile]] = []
        start = 0
        while len(found) < limit:
            rows: list[Any] = await self.redis.zrevrange(
                ranking_key(tenant, score), start, start + limit - 1, withscores=True)
            if not rows:
                break
            start += len(rows)
            ids = [text(member) for member, _ in rows]
            for (_, value), profile in zip(rows, await self.profiles(tenant, ids), strict=True):
                if profile is not None and len(found) < limit:
                    found.append((float(value), profile))
        return found

    async def customer_ids(self, tenant: str, limit: int | None = None) -> list[str]:
        """Customers of a tenant, most recently active first."""
        end = -1 if limit is None else limit - 1
        members: list[Any] = await self.redis.zrevrange(customers_key(tenant), 0, end)
        return [text(member) for member in members]

    async def customer_count(self, tenant: str) -> int:
        return int(await self.redis.zcard(customers_key(tenant)))

    async def profiles(self, tenant: str, customer_ids: list[str]) -> list[CustomerProfile | None]:
        """Several customers' profiles (features without categories) in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(segments_key(tenant))
            for customer_id in customer_ids:
                pipe.hgetall(CustomerKeys(tenant, customer_id).profile)
            raw_segments, *rows = await pipe.execute()
        segments = PublishedSegments.from_raw(raw_segments)
        return [profile_from_raw(tenant, customer_id, fields, [], [], segments) if fields
                else None for customer_id, fields in zip(customer_ids, rows, strict=True)]

    async def recommendations_of_known(
        self, tenant: str, customer_id: str
    ) -> list[Recommendation] | None:
        """A known customer's recommendations ([] before any are computed); None if unknown."""
        keys = CustomerKeys(tenant, customer_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.profile)
            pipe.get(keys.recos)
            exists, raw = await pipe.execute()
        if not exists:
            return None
        return [Recommendation(**item) for item in orjson.loads(raw)] if raw else []


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _decode_alert(fields: dict[bytes, bytes]) -> Alert | None:
    try:
        return Alert.model_validate_json(fields[b"alert"])
    except (KeyError, ValidationError) as error:
        log.warning("skipping an unreadable alert stream entry: %s", error)
        return None


class SystemReader:
    """Reads of what workers publish for everyone: alerts, segments, models, throughput."""

    def __init__(self, *, redis: AsyncRedis) -> None:
        self.redis = redis

    async def alerts(self, tenant: str, *, kind: str | None = None, since_ms: int | None = None,
                     limit: int = 50, scan_limit: int = 5000) -> list[Alert]:
        """A tenant's newest alerts first, scanning at most ``scan_limit`` stream entries."""
        found: list[Alert] = []
        upper: bytes | str = "+"
        lower = f"{since_ms}-0" if since_ms is not None else "-"
        scanned = 0
        while len(found) < limit and scanned < scan_limit:
            page: Any = await self.redis.xrevrange(ALERTS_STREAM_KEY, upper, lower, count=500)
            if not page:
                break
            for _, fields in page:
                if fields.get(b"tenant", b"").decode() != tenant:
                    continue
                if kind is not None and fields.get(b"kind", b"").decode() != kind:
                    continue
                alert = _decode_alert(fields)
                if alert is not None:
                    found.append(alert)
                    if len(found) == limit:
                        break
            scanned += len(page)
            upper = b"(" + page[-1][0]
        return found

    async def alerts_after(self, last_id: str, *, block_ms: int
                           ) -> tuple[str, list[tuple[str, str, str, Alert]]]:
        """Alerts added after ``last_id`` ("$": from now), waiting up to ``block_ms``.

        Answers the new last id and (entry id, tenant, kind, alert) for each new entry.
        """
        if last_id == "$":
            newest: Any = await self.redis.xrevrange(ALERTS_STREAM_KEY, count=1)
            last_id = newest[0][0].decode() if newest else "0-0"
        reply: Any = await self.redis.xread({ALERTS_STREAM_KEY: last_id}, block=block_ms,
                                                  count=100)
        entries: list[tuple[str, str, str, Alert]] = []
        for _, page in reply or []:
            for entry_id, fields in page:
                last_id = entry_id.decode()
                alert = _decode_alert(fields)
                if alert is not None:
                    entries.append((last_id, fields.get(b"tenant", b"").decode(),
                                    fields.get(b"kind", b"").decode(), alert))
        return last_id, entries

    async def segments(self, tenant: str) -> list[SegmentOut]:
        raw: Any = await self.redis.hgetall(segments_key(tenant))  # type: ignore[misc]
        segments = [_validated(SegmentOut, value) for value in raw.values()]
        return sorted((s for s in segments if s is not None), key=lambda s: s.segment)

    async def models(self) -> list[ModelOut]:
        raw: Any = await self.redis.hgetall(MODELS_KEY)  # type: ignore[misc]
        models = [_validated(ModelOut, value) for value in raw.values()]
        for model in models:
            if model is not None and model.drifted_at is None:
                model.drifted_at = from_ms(_drift_ms(model.metrics.get("drifted_at")))
        return sorted((m for m in models if m is not None), key=lambda m: m.name)

    async def forecast(self, tenant: str, *, category: str, granularity: str,
                       horizon: int) -> RevenueForecast | None:
        return await read_forecast(self.redis, tenant, category=category,
                                   granularity=granularity, horizon=horizon,
                                   now_ms=int(time.time() * 1000))

    async def model_history(self, limit: int = 300) -> list[ModelSnapshot]:
        """The newest ``limit`` model metric snapshots, oldest first."""
        snapshots: list[ModelSnapshot] = []
        entries: Any = await self.redis.xrevrange(MODELS_HISTORY_KEY, count=limit)
        for entry_id, fields in reversed(entries):
            try:
                snapshots.append(ModelSnapshot(
                    at=from_ms(fields.get(b"at") or _entry_ms(entry_id)),
                    model=fields[b"model"].decode(),
                    metrics=orjson.loads(fields.get(b"metrics", b"{}"))))
            except (KeyError, ValueError, ValidationError) as error:
                log.warning("skipping an unreadable model snapshot: %s", error)
        return snapshots

    async def throughput(self, limit: int = 300) -> list[ThroughputSample]:
        """The newest ``limit`` throughput samples, oldest first."""
        samples: list[ThroughputSample] = []
        entries: Any = await self.redis.xrevrange(THROUGHPUT_KEY, count=limit)
        for entry_id, fields in reversed(entries):
            try:
                lag = fields.get(b"lag")
                samples.append(ThroughputSample(
                    at=from_ms(fields.get(b"at") or _entry_ms(entry_id)),
                    events_per_s=float(fields[b"events_per_s"]),
                    lag=float(lag) if lag not in (None, b"") else None))
            except (KeyError, ValueError) as error:
                log.warning("skipping an unreadable throughput sample: %s", error)
        return samples

    async def counters(self, topic_prefix: str = "") -> list[PipelineCounter]:
        """The workers' processed-event counters, topic names without ``topic_prefix``."""
        raw: Any = await self.redis.hgetall(METRICS_KEY)  # type: ignore[misc]
        counters = []
        for field, value in raw.items():
            topic, _, outcome = field.decode().rpartition("|")
            if topic_prefix and topic.startswith(topic_prefix):
                topic = topic[len(topic_prefix):]
            counters.append(PipelineCounter(topic=topic, outcome=outcome, count=int(value)))
        return sorted(counters, key=lambda c: (c.topic, c.outcome))

    async def erasure(self, receipt_id: str) -> dict[str, str]:
        key = erasure_receipt_key(receipt_id)
        raw: Any = await self.redis.hgetall(key)  # type: ignore[misc]
        return {field.decode(): value.decode() for field, value in raw.items()}


def _validated(model: type[ModelT], raw: bytes) -> ModelT | None:
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        log.warning("skipping an unreadable %s: %s", model.__name__, error)
        return None
