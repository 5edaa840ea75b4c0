"""The real pipeline for a quality run: broker, redis-server, topics and one ``crm worker``.

:class:`PipelineRun` replays a list of events through Kafka exactly as shops would send them,
waits until the worker has recorded progress past every delivered offset (the worker's
Redis progress keys, as the replay-exactness test does), stops the worker with SIGTERM so it
writes its final model checkpoint, and then hands back that checkpoint and the profiles.
Nothing here is mocked: what is measured is what ``crm worker`` learnt.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from agents.checkpoints import CheckpointStore
from agents.recommending import restore_recommender
from feature_store.customers import Customer, load_customers
from feature_store.keys import MODELS_KEY, progress_key, watermark_key
from load_tests.commands import create_topics
from online_models import SCORING_MODELS, ModelBundle, scores_version
from schemas.topics import CLICKS, PURCHASES, TICKETS
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings

log = logging.getLogger(__name__)

INPUT_TOPICS = (CLICKS, PURCHASES, TICKETS)

#: (full topic name, key, JSON bytes) of one event, ready for ``EventProducer.send_raw``.
Message = tuple[str, str, bytes]


class WorkerFailed(RuntimeError):
    """The worker died or stalled before processing every delivered event."""


class LocalStack:
    """An embedded broker and a redis-server under ``work_dir``, for as long as the ``with``."""

    def __init__(self, *, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.bootstrap = ""
        self.redis_url = ""
        self._stack = ExitStack()

    def __enter__(self) -> LocalStack:
        from stream.devstack import EmbeddedBroker, RedisServer

        broker = EmbeddedBroker(work_dir=self.work_dir)
        self.bootstrap = broker.start()
        self._stack.callback(broker.stop)
        server = RedisServer(work_dir=self.work_dir, persist=False)
        self.redis_url = server.start()
        self._stack.callback(server.stop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


class PipelineRun:
    """One replay through the real pipeline: fresh topics, an empty Redis db, one worker.

    Parameters
    ----------
    stack
        The running broker and redis-server.
    name
        Names the run's topics, consumer group and logs (``quality-<name>-<random>``).
    overrides
        Extra :class:`~stream.settings.Settings` fields for the worker (horizon, lateness...).
    progress
        Show tqdm bars while producing and while waiting for the worker.
    """

    def __init__(
        self,
        *,
        stack: LocalStack,
        name: str,
        overrides: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        run_id = f"quality-{name}-{uuid.uuid4().hex[:6]}"
        self.work_dir = stack.work_dir / run_id
        self.settings = Settings(
            kafka_bootstrap=stack.bootstrap,
            redis_url=stack.redis_url,
            topic_prefix=f"{run_id}.",
            app_id=run_id,
            worker_name="quality",
            checkpoint_dir=self.work_dir / "checkpoints",
            log_level="WARNING",
            **(overrides or {}),
        )
        self.progress = progress
        self.worker: ManagedProcess | None = None
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.delivered = 0

    @property
    def log_path(self) -> Path:
        return self.work_dir / "worker.log"

    def start(self) -> None:
        """Empty the Redis db, create the topics and start ``crm worker``."""
        redis.Redis.from_url(self.settings.redis_url).flushdb()
        create_topics(self.settings)
        self.worker = ManagedProcess(
            name=f"crm worker ({self.settings.app_id})",
            argv=[sys.executable, "-m", "crm", "worker"],
            log_path=self.log_path,
            env=self.settings.to_env(),
        ).start()

    def produce(self, messages: Iterable[Message], *, total: int | None, desc: str,
                max_backlog: int | None = None) -> int:
        """Send every message with the producer SDK; remember the last offset per partition.

        ``max_backlog`` bounds how far the producer may run ahead of the worker (in events).
        A replay as fast as possible would otherwise let the quiet topics (purchases,
        tickets) race months of event time ahead of the busy one (clicks), since each topic
        has its own agent: purchases would be learnt before the clicks that led to them, and
        the watermark, driven by the most advanced topic, would call customers churned whose
        clicks are still queued. Live traffic has milliseconds of lag, not months; a small
        backlog keeps the replay close to that while the worker stays busy.
        """

        def delivered(topic: str, partition: int, offset: int) -> None:
            key = (topic, partition)
            if offset > self.last_offsets.get(key, -1):
                self.last_offsets[key] = offset
            self.delivered += 1

        bar = _bar(total, desc, self.progress)
        delivered_before = self.delivered
        client = redis.Redis.from_url(self.settings.redis_url)
        progress_keys = [progress_key(self.settings.topic(name), partition)
                         for name in INPUT_TOPICS for partition in range(self.settings.partitions)]
        sent = 0
        try:
            with EventProducer(settings=self.settings) as producer:
                for topic, key, payload in messages:
                    producer.send_raw(topic, key, payload, on_delivered=delivered)
                    sent += 1
                    if sent % 256 == 0:
                        bar.update(sent - bar.n)
                        self._check_alive()
                        if max_backlog is not None:
                            self._wait_for_backlog(producer, client, progress_keys,
                                                   sent - max_backlog)
        finally:
            client.close()
        bar.update(sent - bar.n)
        bar.close()
        if self.delivered - delivered_before != sent:
            raise WorkerFailed(f"only {self.delivered - delivered_before} of {sent} events "
                               "were delivered")
        return sent

    def _wait_for_backlog(self, producer: EventProducer, client: redis.Redis,
                          keys: list[str], target: int, stall_timeout_s: float = 180.0) -> None:
        """Block until the worker has finished ``target`` messages."""
        last, since = -1, time.monotonic()
        while (done := _processed(client, keys)) < target:
            self._check_alive()
            if done != last:
                last, since = done, time.monotonic()
            elif time.monotonic() - since > stall_timeout_s:
                raise WorkerFailed(f"the worker made no progress for {stall_timeout_s:.0f}s "
                                   f"({done} done):\n{self._tail()}")
            producer.flush(30.0)
            time.sleep(0.02)

    def wait_until_processed(self, *, stall_timeout_s: float = 180.0) -> float:
        """Wait until the worker's progress reaches every delivered offset; returns seconds."""
        client = redis.Redis.from_url(self.settings.redis_url)
        keys = [progress_key(topic, partition) for topic, partition in self.last_offsets]
        targets = list(self.last_offsets.values())
        total = sum(offset + 1 for offset in targets)
        bar = _bar(total, "worker processing", self.progress)
        started = last_change = time.monotonic()
        done = -1
        try:
            while True:
                self._check_alive()
                values = client.mget(keys) if keys else []
                current = [int(v) if v is not None else -1 for v in values]  # type: ignore[union-attr]
                now_done = sum(min(c, t) + 1 for c, t in zip(current, targets, strict=True))
                if now_done != done:
                    bar.update(now_done - bar.n)
                    done, last_change = now_done, time.monotonic()
                if all(c >= t for c, t in zip(current, targets, strict=True)):
                    return time.monotonic() - started
                if time.monotonic() - last_change > stall_timeout_s:
                    raise WorkerFailed(f"the worker made no progress for {stall_timeout_s:.0f}s "
                                       f"({done}/{total}):\n{self._tail()}")
                time.sleep(0.25)
        finally:
            bar.close()
            client.close()

    def stop_worker(self, *, timeout: float = 60.0) -> None:
        """SIGTERM: Faust stops the agents and the app writes its final checkpoint."""
        if self.worker is None:
            return
        self.worker.signal(signal.SIGTERM)
        assert self.worker.process is not None
        try:
            self.worker.process.wait(timeout)
        finally:
            self.worker.stop(timeout=5)

    def final_bundle(self) -> ModelBundle:
        """The worker's newest checkpoints (written on shutdown), as one bundle."""
        store = CheckpointStore(directory=self.settings.checkpoint_dir,
                                app_id=self.settings.app_id, worker_name="quality")
        bundle = store.load_latest()
        if bundle is None:
            raise WorkerFailed(f"the worker left no checkpoint:\n{self._tail()}")
        # The recommender learns in a process of its own and checkpoints apart.
        bundle.recommender = restore_recommender(self.settings, "quality")
        return bundle

    def profiles(self, customer_ids: list[str], *, tenant: str = "default",
                 chunk: int = 2000) -> dict[str, Customer]:
        """The profiles (as the models read them) of the customers that have one."""
        return asyncio.run(_load_profiles(self.settings.redis_url, tenant, customer_ids, chunk,
                                          self.progress))

    def profile_fields(self, customer_ids: list[str], fields: list[str], *,
                       tenant: str = "default") -> dict[str, dict[str, str]]:
        """Raw fields of the profile hashes (the scores the worker wrote), per customer."""
        from feature_store.keys import CustomerKeys

        client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        out: dict[str, dict[str, str]] = {}
        try:
            for start in range(0, len(customer_ids), 2000):
                batch = customer_ids[start:start + 2000]
                with client.pipeline(transaction=False) as pipe:
                    for customer in batch:
                        pipe.hmget(CustomerKeys(tenant, customer).profile, fields)
                    replies = pipe.execute()
                for customer, values in zip(batch, replies, strict=True):
                    if any(v is not None for v in values):
                        out[customer] = {f: v for f, v in zip(fields, values, strict=True)
                                         if v is not None}
        finally:
            client.close()
        return out

    def model_watermark(self) -> int:
        """The watermark the worker scores at, from the per-partition watermarks it
        recorded: the slowest partition of the clicks and purchases topics."""
        client = redis.Redis.from_url(self.settings.redis_url)
        try:
            keys = [watermark_key(self.settings.topic(name), p) for name in (CLICKS, PURCHASES)
                    for p in range(self.settings.partitions)]
            return min(int(v) for v in client.mget(keys) if v is not None)  # type: ignore[union-attr]
        finally:
            client.close()

    def wait_until_scored(self, customer_ids: list[str], watermark_ms: int, *,
                          tenant: str = "default", timeout_s: float = 300.0) -> float:
        """Wait until the silence sweep has scored every customer at ``watermark_ms`` (or at
        their own later activity) with the models the worker holds now, reading the Redis
        profiles as the API would; answers the seconds it took."""
        started = time.monotonic()
        began_ms = round(time.time() * 1000)
        waiting = list(customer_ids)
        bar = _bar(len(waiting), "scores reaching the watermark", self.progress)
        try:
            while waiting:
                current = self._scores_version(published_after_ms=began_ms)
                fields = self.profile_fields(waiting, ["scored_at", "last_seen_at",
                                                       "model_version"], tenant=tenant)
                waiting = [c for c in waiting if c in fields  # no profile: nothing to score
                           and (current is None or fields[c].get("model_version") != current
                                or int(fields[c].get("scored_at", 0))
                                < max(watermark_ms, int(fields[c].get("last_seen_at", 0))))]
                bar.update(len(customer_ids) - len(waiting) - bar.n)
                if waiting and time.monotonic() - started > timeout_s:
                    raise WorkerFailed(f"{len(waiting)} customers not scored at the watermark "
                                       f"by the models of now ({current}) after "
                                       f"{timeout_s:.0f}s, e.g. {waiting[:3]}")
                if waiting:
                    self._check_alive()
                    time.sleep(0.5)
        finally:
            bar.close()
        return time.monotonic() - started

    def _scores_version(self, *, published_after_ms: int) -> str | None:
        """The ``scores_version`` of the worker's models, from telemetry published after
        ``published_after_ms`` (wall clock); ``None`` until there is such telemetry."""
        client = redis.Redis.from_url(self.settings.redis_url)
        try:
            published = {name: orjson.loads(raw) for name, raw in zip(
                SCORING_MODELS, client.hmget(MODELS_KEY, list(SCORING_MODELS)), strict=True)
                if raw is not None}
        finally:
            client.close()
        if len(published) < len(SCORING_MODELS) or any(
                int(model["updated_at"]) <= published_after_ms for model in published.values()):
            return None
        return scores_version({name: model["version"] for name, model in published.items()})

    def _check_alive(self) -> None:
        if self.worker is not None and not self.worker.is_running():
            raise WorkerFailed(f"the worker exited:\n{self._tail()}")

    def _tail(self) -> str:
        return self.worker.log_tail(40) if self.worker else "(no worker)"


async def _load_profiles(url: str, tenant: str, customer_ids: list[str], chunk: int,
                         progress: bool) -> dict[str, Customer]:
    client = aioredis.Redis.from_url(url)
    out: dict[str, Customer] = {}
    bar = _bar(len(customer_ids), "reading profiles", progress)
    try:
        for start in range(0, len(customer_ids), chunk):
            batch = customer_ids[start:start + chunk]
            inputs = await load_customers(client, [(tenant, c) for c in batch])
            out.update({customer: model_input for (_, customer), model_input in inputs.items()})
            bar.update(len(batch))
    finally:
        bar.close()
        await client.aclose()
    return out


def _processed(client: redis.Redis, keys: list[str]) -> int:
    """Messages the worker has finished, from its progress keys (fresh topics: offsets from 0)."""
    return sum(int(value) + 1 for value in client.mget(keys) if value is not None)  # type: ignore[union-attr]


def _bar(total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ev" if "profiles" not in desc else "customer",
                unit_scale=True, file=sys.stderr, mininterval=1.0, disable=not enabled,
                leave=True)
