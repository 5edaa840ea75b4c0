"""Two workers, one set of segments: the worker holding a tenant's lease fits them, the
other takes its fit, against a real redis-server and read back through the API.

Each worker learns only the customers of its partitions, as workers do. Without sharing,
each fitted its own segments: the same id meant other customers on each worker, and
``/v1/segments`` showed whichever published last."""

from __future__ import annotations

import asyncio

import orjson

from agents.batch import Worker, process_batch
from agents.models import ModelStep
from agents.segment_sharing import SegmentSharing
from feature_store import FeatureStore
from feature_store.keys import segments_key
from online_models import ModelBundle
from online_models.features import DAY_MS, behaviour_vector
from online_models.segments import Segmenter
from schemas.events import AnyEvent
from tests.integration.support import Api
from tests.unit.support import FakeAlertProducer, Messages, batch_worker, click, purchase

DAY = 24 * 60
#: Kinds of customer: (days between visits, spend per order or None for a browser).
KINDS = {"frequent": (3, 15.0), "big": (30, 400.0), "browser": (4, None)}


def history(customer: str, kind: str, number: int, days: int = 120) -> list[AnyEvent]:
    """A customer's visits over ``days``, with an order on each (but a browser's); the
    ``number``-th customer of a kind visits and spends a little differently from the next."""
    gap, spend = KINDS[kind]
    events: list[AnyEvent] = []
    for visit, day in enumerate(range(number % 3, days, gap + number % 2)):
        minutes = day * DAY + 60 * (number % 12)
        events.append(click(f"{customer}-v{visit}", customer, minutes))
        if spend is not None:
            events.append(purchase(f"{customer}-o{visit}", customer, minutes + 5,
                                   spend * (1 + number % 7 / 20)))
    return events


class Shard:
    """One worker's batch over the real store, with its own models, partition and name."""

    def __init__(self, api: Api, name: str, partition: int, lease_ms: int = 10_000) -> None:
        self.store = FeatureStore(redis=api.redis)
        self.worker: Worker = batch_worker(self.store, api.settings,
                                           models=ModelStep(bundle=ModelBundle()),
                                           producer=FakeAlertProducer())
        self.segments = self.worker.models.bundle.segments
        self.sharing = SegmentSharing(store=self.store, segments=self.segments, worker=name,
                                      lease_ms=lease_ms)
        self.partition = partition
        self.messages = Messages(api.settings)

    async def send(self, customers: dict[str, str]) -> None:
        """Each customer's history, in batches of a few days of the whole shard."""
        events = sorted((e for number, (c, kind) in enumerate(customers.items())
                         for e in history(c, kind, number)), key=lambda e: e.occurred_at)
        for start in range(0, len(events), 400):
            await process_batch(self.worker, self.messages(events[start:start + 400],
                                                           self.partition))

    async def visit(self, customers: dict[str, str], minutes: float) -> None:
        """One more visit of each customer: scored again, with the segments known now."""
        await process_batch(self.worker, self.messages(
            [click(f"{c}-again-{minutes}", c, minutes) for c in customers], self.partition))


def customers_of(prefix: str, count: int) -> dict[str, str]:
    kinds = list(KINDS)
    return {f"{prefix}{i}": kinds[i % len(kinds)] for i in range(count)}


async def test_two_workers_serve_one_set_of_segments_and_a_successor_keeps_it(
        api: Api) -> None:
    """Verify that the worker holding the lease fits the tenant's segments and the other
    serves its fit: a customer of either worker gets the segment and label /v1/segments
    has, the segments' sizes count every customer once, and the other worker fits nothing
    of its own. When the owner stops, the other takes over with the same segments (ids,
    labels, identity); when that one dies without a word, a third takes over once its
    lease has run out."""
    headers = await api.key(tenant="default")
    first, second = Shard(api, "w1", partition=0), Shard(api, "w2", partition=1)
    theirs, ours = customers_of("a", 150), customers_of("b", 150)
    await first.sharing.sync(["default"])
    await second.sharing.sync(["default"])
    assert first.sharing.held("default") and not second.sharing.held("default")
    await first.send(theirs)
    await second.send(ours)
    assert first.segments.of("default").centres, "the lease holder fits"
    assert not second.segments.of("default").centres, "the other one waits for its fit"

    await first.sharing.sync(["default"])
    await second.sharing.sync(["default"])
    owner, other = first.segments.of("default"), second.segments.of("default")
    assert other.fit_version == owner.fit_version and other.labels() == owner.labels()
    await first.visit(theirs, 121 * DAY)
    await second.visit(ours, 121 * DAY)
    await first.sharing.sync(["default"])  # sizes as of now

    listed = (await api.client.get("/v1/segments", headers=headers)).json()["segments"]
    labels = {s["segment"]: s["label"] for s in listed}
    assert sum(s["size"] for s in listed) == len(theirs) + len(ours)
    published = await api.redis.hgetall(segments_key("default"))
    assert {orjson.loads(s)["segmenter"] for s in published.values()} == {owner.identity}
    by_kind: dict[str, set[tuple[int, str]]] = {kind: set() for kind in KINDS}
    for customer, kind in (theirs | ours).items():
        scores = (await api.client.get(f"/v1/customers/{customer}",
                                       headers=headers)).json()["scores"]
        assert labels[scores["segment"]] == scores["segment_label"]
        by_kind[kind].add((scores["segment"], scores["segment_label"]))
    assert all(len(served) == 1 for served in by_kind.values()), by_kind
    assert len({served.pop() for served in by_kind.values()}) == len(KINDS)

    # The owner stops: the other worker takes over at its next tick, with the same segments.
    refits, served = owner.refits, {kind: segment_of(other, kind) for kind in KINDS}
    await first.sharing.release()
    await second.sharing.sync(["default"])
    assert second.sharing.held("default") and other.identity == owner.identity
    await second.send(customers_of("c", 150))  # its own customers: it refits on them
    assert other.refits > refits
    assert {kind: segment_of(other, kind) for kind in KINDS} == served
    await second.sharing.sync(["default"])
    await first.sharing.sync(["default"])
    assert not first.sharing.held("default") and owner.fit_version == other.fit_version

    # The new owner dies without giving the lease up: a newcomer takes over after it.
    second.sharing.lease_ms = 300
    await second.sharing.sync(["default"])
    third = Shard(api, "w3", partition=2)
    await third.sharing.sync(["default"])
    assert not third.sharing.held("default")
    await asyncio.sleep(0.4)
    await third.sharing.sync(["default"])
    newcomer = third.segments.of("default")
    assert third.sharing.held("default") and newcomer.fit_version == other.fit_version
    assert {kind: segment_of(newcomer, kind) for kind in KINDS} == served


def segment_of(segmenter: Segmenter, kind: str) -> int | None:
    """The segment a typical customer of ``kind`` gets from ``segmenter``."""
    gap, spend = KINDS[kind]
    visits = 120 // gap
    orders = 0 if spend is None else visits
    profile = {"active_days": visits, "orders": orders, "revenue": (spend or 0.0) * orders,
               "views": visits, "first_seen_at": 0, "last_seen_at": 120 * DAY_MS}
    return segmenter.assign(behaviour_vector(profile))


async def test_a_worker_back_from_a_restart_continues_the_published_segments(
        api: Api) -> None:
    """Verify that a worker restarted without the tenant in its checkpoint, which met the
    tenant's customers before its first tick (and so fitted segments of its own), takes the
    published segments up once it holds the lease: same identity, same ids."""
    before = Shard(api, "w1", partition=0)
    await before.sharing.sync(["default"])
    await before.send(customers_of("a", 150))
    await before.sharing.sync(["default"])
    published = before.segments.of("default")
    served = {kind: segment_of(published, kind) for kind in KINDS}
    await before.sharing.release()  # it stops

    after = Shard(api, "w1", partition=1)  # a new process, with nothing of the tenant
    await after.send(customers_of("b", 150))
    restarted = after.segments.of("default")
    assert restarted.centres and restarted.identity != published.identity
    await after.sharing.sync(["default"])
    assert after.sharing.held("default") and restarted.identity == published.identity
    assert {kind: segment_of(restarted, kind) for kind in KINDS} == served
