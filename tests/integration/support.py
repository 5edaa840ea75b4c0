"""Helpers the integration tests share: the API as its own process (uvicorn) or as an ASGI
app in the test's process on the real redis-server, a fake of the API's event producer,
customers and alerts written as the worker writes them, and a dead-letter publisher that
must not be used. The fixtures built on them are in ``conftest.py``.

Nothing here is a test.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI

from api.keys import create_key, create_key_sync
from feature_store.client import connect
from feature_store.keys import (
    ALERTS_STREAM_KEY,
    CustomerKeys,
    customers_key,
    progress_key,
    ranking_key,
)
from feature_store.reads import ProfileReader
from schemas.events import AnyEvent
from schemas.records import DeadLetter
from simulator import TOPIC_BY_TYPE
from stream.devstack import RedisServer
from stream.processes import ManagedProcess, free_port
from stream.producer import DeliveryError, DeliveryReport, EventProducer
from stream.settings import Settings
from tests.helpers import settings_env
from tests.reference_features import assert_same_features, reference_profiles


@dataclass
class ApiServer:
    url: str
    key: str
    process: ManagedProcess

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=10, **kwargs)


def start_api(settings: Settings, log_path: Path, **env: str) -> ApiServer:
    port = free_port()
    process = ManagedProcess(
        name="api",
        argv=[sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
              "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "3",
              "--log-level", "warning"],
        log_path=log_path,
        env={**settings_env(settings), **env},
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200,
                       timeout=30, what="/healthz")
    key = create_key_sync(settings, tenant="default", scopes=("read", "ingest", "admin"),
                          name="test", rate_limit=0)
    return ApiServer(url=url, key=key, process=process)


@dataclass
class FakeProducer:
    """Records what the API publishes; ``fail`` makes the next flush fail."""

    events: list[AnyEvent] = field(default_factory=list)
    raw: list[tuple[str, Any, bytes]] = field(default_factory=list)
    report: DeliveryReport = field(default_factory=DeliveryReport)
    fail: bool = False

    def send(self, event: AnyEvent) -> AnyEvent:
        self.events.append(event)
        return event

    def send_raw(self, topic: str, key: Any, value: bytes) -> None:
        self.raw.append((topic, key, value))

    def flush(self, timeout: float = 30.0) -> DeliveryReport:
        if self.fail:
            self.fail = False
            self.report.failed += 1
            raise DeliveryError("1 events failed delivery: broker down")
        return self.report


@dataclass
class Api:
    client: httpx.AsyncClient
    redis: aioredis.Redis
    producer: FakeProducer
    app: FastAPI
    settings: Settings

    async def key(self, tenant: str = "shop1", scopes: str = "read,ingest,admin",
                  rate_limit: int | None = None) -> dict[str, str]:
        key = await create_key(self.redis, tenant, scopes, "test", rate_limit=rate_limit)
        return {"Authorization": f"Bearer {key}"}


def click(event_id: str = "e1", customer_id: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "customer_id": customer_id, "type": "click",
            "kind": "product_view", "product_id": "p1",
            "occurred_at": "2026-03-01T10:00:00+00:00", **extra}


async def put_profile(redis: aioredis.Redis, tenant: str, customer_id: str,
                      **fields: Any) -> None:
    """A customer as the worker would have written it (a few fields)."""
    mapping = {"views": 3, "orders": 1, "revenue_cents": 2500, "updated_at": 1772359200000,
               "last_seen_at": 1772359200000, **fields}
    await redis.hset(CustomerKeys(tenant, customer_id).profile, mapping=mapping)
    await redis.zadd(customers_key(tenant), {customer_id: 1772359200000})
    if "churn_probability" in fields:
        await redis.zadd(ranking_key(tenant, "churn"),
                         {customer_id: float(fields["churn_probability"])})


async def add_alert(redis: aioredis.Redis, tenant: str, customer_id: str,
                    kind: str = "churn_risk", alert_id: str | None = None) -> bytes:
    alert = {"alert_id": alert_id or f"al_{uuid.uuid4().hex[:12]}", "kind": kind,
             "customer_id": customer_id, "tenant": tenant, "score": 0.9, "threshold": 0.7,
             "reason": "Has not been back for 60 days after 4 orders.",
             "explanation": [{"feature": "days_since_last_order", "value": 60,
                              "contribution": 1.2}],
             "triggered_by": "e9", "occurred_at": "2026-03-01T10:00:00+00:00",
             "emitted_at": "2026-03-01T10:00:01+00:00", "model_version": "churn-v1"}
    entry: bytes = await redis.xadd(ALERTS_STREAM_KEY, {"alert": orjson.dumps(alert),
                                                        "tenant": tenant, "kind": kind})
    return entry


class NoDeadLetters:
    """For tests whose events are all valid: publishing a dead letter fails the test."""

    async def publish_all(self, dead_letters: Sequence[DeadLetter]) -> None:
        if dead_letters:
            raise AssertionError(f"unexpected dead letters: {dead_letters}")


class OwnRedis:
    """A redis-server on a fixed port with its data on disk (append-only file, fsynced every
    second), which a test may kill and start again on the same port, or pause."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = free_port()
        self.server = self._new()
        self.url = self.server.start()
        self._sizes: list[tuple[float, Path, int]] = []
        self._watching = threading.Event()

    def _new(self) -> RedisServer:
        return RedisServer(work_dir=self.work_dir, port=self.port, persist=True)

    def kill(self) -> None:
        self.server.process.kill()

    def restart(self) -> None:
        self.server = self._new()
        self.server.start()

    def pause(self, seconds: float) -> None:
        self.server.process.signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.server.process.signal(signal.SIGCONT)

    def stop(self) -> None:
        self._watching.clear()
        self.server.process.signal(signal.SIGCONT)
        self.server.stop()

    def watch_append_only_file(self) -> None:
        """Note the size of the append-only file every 50 ms, for :meth:`lose_last_writes`
        (and turn off its rewrites, which would start a new file)."""
        redis.Redis.from_url(self.url).config_set("auto-aof-rewrite-percentage", 0)
        self._watching.set()

        def watch() -> None:
            while self._watching.is_set():
                newest = max((self.work_dir / "redis" / "appendonlydir").glob("*.incr.aof"),
                             key=lambda path: int(path.name.split(".")[2]))
                self._sizes.append((time.monotonic(), newest, newest.stat().st_size))
                time.sleep(0.05)

        threading.Thread(target=watch, name="aof-watch", daemon=True).start()

    def lose_last_writes(self, seconds: float) -> int:
        """With the server killed: cut the append-only file back to its size ``seconds``
        before, as if they had never reached the disk (what ``appendfsync everysec`` risks
        when the host dies; killing redis-server alone loses nothing, the kernel has the
        file). Answers the bytes cut."""
        assert not self.server.process.is_running(), "kill the server first"
        self._watching.clear()
        cut_at = time.monotonic() - seconds
        path, size = next((path, size) for at, path, size in reversed(self._sizes)
                          if at <= cut_at)
        lost = path.stat().st_size - size
        with path.open("r+b") as aof:
            aof.truncate(size)
        return lost


class NoRereads:
    """For tests whose Redis never loses writes: reading a partition again fails the test."""

    async def read(self, topic: str, partition: int, *, first: int, end: int,
                   limit: int) -> list[tuple[int, bytes]]:
        raise AssertionError(f"unexpected re-read of {topic}/{partition} {first}..{end}")


def send(settings: Settings, events: list[dict[str, object]]) -> dict[tuple[str, int], int]:
    """Produce ``events`` to their topics keyed by customer; the last offset per partition."""
    last: dict[tuple[str, int], int] = {}

    def delivered(topic: str, partition: int, offset: int) -> None:
        last[(topic, partition)] = max(last.get((topic, partition), -1), offset)

    with EventProducer(settings=settings) as producer:
        for event in events:
            producer.send_raw(settings.topic(TOPIC_BY_TYPE[str(event["type"])]),
                              str(event.get("customer_id") or f"anon:{event['anonymous_id']}"),
                              orjson.dumps(event), on_delivered=delivered)
    return last


def caught_up(client: redis.Redis, last: dict[tuple[str, int], int]) -> Callable[[], bool]:
    def done() -> bool:
        recorded = client.mget([progress_key(t, p) for t, p in last])
        return all(value is not None and int(value) >= last[key]  # type: ignore[arg-type]
                   for key, value in zip(last, recorded, strict=True))  # type: ignore[arg-type]
    return done


def assert_profiles_exact(redis_url: str, events: Sequence[dict[str, Any]], *,
                          cluster: bool = False, tenant: str = "default") -> int:
    """Every profile in Redis equals the offline recomputation of ``events``
    (:mod:`tests.reference_features`), and the tenant's index holds exactly those profiles;
    answers how many were checked."""
    expected = reference_profiles(events)

    async def read() -> tuple[dict[str, dict[str, Any]], list[str]]:
        client = connect(redis_url, cluster=cluster)
        reader = ProfileReader(redis=client)
        try:
            profiles = {}
            for profile_id in expected:
                profile = await reader.profile(tenant, profile_id)
                assert profile is not None, f"{profile_id} has no profile"
                profiles[profile_id] = profile.features.model_dump()
            return profiles, await reader.customer_ids(tenant)
        finally:
            await client.aclose()

    profiles, indexed = asyncio.run(read())
    assert set(indexed) == set(expected), "extra or missing profiles in Redis"
    for profile_id, features in expected.items():
        assert_same_features(profiles[profile_id], features, profile_id)
    return len(expected)
