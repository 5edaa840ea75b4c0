"""The worker's batch function, top to bottom, against an in-memory store double: the real
decode, models, rules and publisher, a fake Kafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import REGISTRY

from agents.alert_config import AlertConfig
from agents.batch import Worker, process_batch
from agents.decoding import RawMessage
from agents.models import ModelEvent, ModelStep
from agents.partitions import Partitions
from agents.publishing import ALERTS_REPEATED, AlertPublisher, AlertPublishError
from agents.rules import AlertRules
from feature_store import Customer, Progress
from online_models import ModelBundle
from schemas.events import AnyEvent, topic_for
from schemas.records import AlertKind, DeadLetter
from schemas.topics import CLICKS, PURCHASES, TICKETS
from stream.metrics import BATCH_STEP_NAMES
from stream.settings import Settings
from tests.unit.memory_store import MemoryStore
from tests.unit.support import (
    FakeAlertProducer,
    ScriptedModels,
    batch_worker,
    click,
    purchase,
    ticket,
    triage_drift,
)


class RecordingDeadLetters:
    def __init__(self) -> None:
        self.published: list[DeadLetter] = []

    async def publish_all(self, dead_letters: Sequence[DeadLetter]) -> None:
        self.published += dead_letters


def new_worker(store: MemoryStore, producer: FakeAlertProducer | None = None, *,
               lateness_ms: int = 0) -> Worker:
    """A worker as after a (re)start: nothing but the store carries over."""
    return Worker(
        store=store,  # type: ignore[arg-type]
        partitions=Partitions(allowed_lateness_ms=lateness_ms,
                              activity_topics=frozenset({CLICKS, PURCHASES})),
        dead_letters=RecordingDeadLetters(),
        models=ModelStep(bundle=ModelBundle()),
        rules=AlertRules(config=AlertConfig(), clicks_topic=CLICKS, purchases_topic=PURCHASES),
        alerts=AlertPublisher(settings=Settings(kafka_bootstrap="127.0.0.1:1"),
                              producer=producer or FakeAlertProducer()),
        max_event_bytes=65_536)


def message(event: AnyEvent, offset: int, partition: int = 0) -> RawMessage:
    return RawMessage(topic_for(event), partition, offset,
                      orjson.dumps(event.model_dump(mode="json", exclude_none=True)))


def unhappy(event_id: str = "t1", customer: str = "c1") -> AnyEvent:
    return ticket(event_id, customer, 0, status="resolved", csat=1)


def produced(worker: Worker) -> list[str]:
    producer: FakeAlertProducer = worker.alerts._producer
    return [alert.alert_id for alert in producer.alerts()]


async def test_invalid_messages_become_dead_letters_and_the_rest_is_applied() -> None:
    """Verify that a bad message is dead-lettered with its source, the valid ones applied,
    and the progress of both recorded in the commit."""
    store = MemoryStore()
    worker = new_worker(store)
    bad = RawMessage(CLICKS, 0, 1, b'{"event_id": "x"')
    report = await process_batch(worker, [message(click("e1", "c1", 0), 0), bad])
    [dead] = worker.dead_letters.published  # type: ignore[attr-defined]
    assert (dead.source_topic, dead.source_offset, dead.error_code.value) == (
        CLICKS, 1, "invalid_json")
    assert report.outcomes == {(CLICKS, "ok"): 1, (CLICKS, "dead_letter"): 1}
    assert store.progress[(CLICKS, 0)] == Progress(done=1, started=1)
    assert set(store.events[("default", "c1")]) == {"e1"}


async def test_each_customer_is_scored_once_per_batch_after_all_of_their_events() -> None:
    """Verify that a customer with many events in a batch gets one score record, from the
    profile after all of them."""
    store = MemoryStore()
    events = [click(f"e{i}", "c1", i) for i in range(5)] + [click("f1", "c2", 1)]
    await process_batch(new_worker(store), [message(e, i) for i, e in enumerate(events)])
    (commit,) = store.commits
    assert sorted(record.customer_id for record in commit.scores) == ["c1", "c2"]
    assert store.scores[("default", "c1")].scored_at_ms == events[4].occurred_at_ms


async def test_a_batch_reads_its_customers_only_once_the_silence_sweep_has_written_its_own(
        ) -> None:
    """Verify that a batch waits for the scores lock (held by a sweep tick between reading
    customers and writing them) before reading anything, and releases it once committed."""
    store = MemoryStore()
    worker = new_worker(store)
    async with worker.scores_lock:  # a tick has customers in hand
        batch = asyncio.create_task(process_batch(worker, [message(click("e1", "c1", 0), 0)]))
        await asyncio.sleep(0.05)
        assert not batch.done() and store.events == {} and store.commits == []
    await batch
    assert len(store.commits) == 1 and not worker.scores_lock.locked()


async def test_messages_a_finished_batch_processed_are_skipped() -> None:
    """Verify that messages at or below the recorded progress are counted as duplicates and
    reach neither the store nor the models."""
    store = MemoryStore()
    worker = new_worker(store)
    batch = [message(click("e0", "c1", 0), 0), message(click("e1", "c1", 1), 1)]
    await process_batch(worker, batch)
    again = await process_batch(new_worker(store), batch)
    assert again.outcomes == {(CLICKS, "duplicate"): 2}
    assert len(store.commits[-1].scores) == 0


async def test_an_event_the_shop_sent_twice_alerts_once() -> None:
    """Verify that a re-sent event, in a later batch or in the same one, fires no alert."""
    store = MemoryStore()
    worker = new_worker(store)
    await process_batch(worker, [message(unhappy(), 0)])
    later = await process_batch(worker, [message(unhappy(), 1)])
    both = await process_batch(worker, [message(unhappy(), 2), message(unhappy(), 3)])
    assert len(produced(worker)) == 1
    assert later.outcomes == {(TICKETS, "duplicate"): 1}
    assert not later.redelivered and not both.redelivered
    assert [a.kind for a in store.feed.values()] == [AlertKind.NEGATIVE_TICKET]


async def test_a_batch_retried_after_its_commit_failed_alerts_once() -> None:
    """Verify that a batch retried in the same worker is a redelivery: its alert is not
    produced again, and the feed and progress are written once the retry commits."""
    store = MemoryStore(fail_commits=1)
    worker = new_worker(store)
    with pytest.raises(ConnectionError):
        await process_batch(worker, [message(unhappy(), 0)])
    assert len(produced(worker)) == 1 and not store.feed
    worker.partitions.forget()
    retried = await process_batch(worker, [message(unhappy(), 0)])
    assert retried.redelivered == [message(unhappy(), 0)]
    assert len(produced(worker)) == 1
    assert list(store.feed) == produced(worker)
    assert store.progress[(TICKETS, 0)].done == 0


async def test_after_a_crash_the_redelivered_trigger_repeats_its_alert_word_for_word() -> None:
    """Verify that a worker restarted after a crash between publishing and committing
    repeats the alert (same id and content, counted as repeated), and that a later re-send
    by the shop fires nothing."""
    store = MemoryStore(fail_commits=1)
    first = new_worker(store)
    with pytest.raises(ConnectionError):
        await process_batch(first, [message(unhappy(), 0)])
    repeated = ALERTS_REPEATED.labels(kind="negative_ticket")
    before = repeated._value.get()
    restarted = new_worker(store)
    await process_batch(restarted, [message(unhappy(), 0)])
    await process_batch(restarted, [message(unhappy(), 1)])
    assert produced(restarted) == produced(first)
    assert (restarted.alerts._producer.alerts()  # type: ignore[attr-defined]
            == first.alerts._producer.alerts())  # type: ignore[attr-defined]
    assert repeated._value.get() == before + 1


async def test_a_cart_fires_once_its_partitions_watermark_passes_and_a_purchase_closes_one(
        ) -> None:
    """Verify that an abandoned cart alerts when the clicks and purchases watermarks pass its
    deadline, once, and that a cart followed by a purchase does not."""
    store = MemoryStore()
    worker = new_worker(store)
    await process_batch(worker, [
        message(click("a1", "anna", 0, kind="add_to_cart"), 0),
        message(click("d1", "dan", 1, kind="add_to_cart"), 1),
        message(purchase("dp", "dan", 5), 0)])
    assert produced(worker) == []
    clock = [message(click("k1", "clock", 40), 2), message(purchase("kp", "clock", 40), 1)]
    await process_batch(worker, clock)
    [alert] = worker.alerts._producer.alerts()  # type: ignore[attr-defined]
    assert (alert.kind, alert.customer_id, alert.triggered_by) == (
        AlertKind.CART_ABANDONMENT, "anna", "a1")
    assert not any(store.timers.values()), "the timer is gone once the alert is committed"
    await process_batch(worker, [message(click("k2", "clock", 90), 3)])
    assert len(produced(worker)) == 1


async def test_a_cart_opened_late_fires_in_the_batch_that_opened_it() -> None:
    """Verify that a cart whose deadline the batch's own watermark passed already fires in
    that batch, and leaves no timer behind."""
    store = MemoryStore()
    worker = new_worker(store)
    await process_batch(worker, [message(click("a1", "anna", 0, kind="add_to_cart"), 0),
                                 message(click("k1", "clock", 40), 1),
                                 message(purchase("kp", "clock", 40), 0)])
    assert [a.triggered_by for a in worker.alerts._producer.alerts()] == ["a1"]  # type: ignore[attr-defined]
    assert not any(store.timers.values())


async def test_a_cart_opened_by_a_batch_that_alerted_and_then_failed_still_fires() -> None:
    """Verify that a cart opened in a batch that also alerted, and failed before its commit
    (the broker not taking its alerts, Redis gone), fires once the watermark passes: the
    retry finds the cart in the rule state saved before publishing and opens no timer, so
    the timer must have been saved with that state."""
    store = MemoryStore(fail_commits=1)
    worker = new_worker(store)
    batch = [message(unhappy("t1", "anna"), 0),
             message(click("a1", "anna", 1, kind="add_to_cart"), 0)]
    with pytest.raises(ConnectionError):
        await process_batch(worker, batch)
    worker.partitions.forget()
    await process_batch(worker, batch)
    await process_batch(worker, [message(click("k1", "clock", 40), 1),
                                 message(purchase("kp", "clock", 40), 0)])
    alerts = worker.alerts._producer.alerts()  # type: ignore[attr-defined]
    assert [(alert.kind, alert.triggered_by) for alert in alerts] == [
        (AlertKind.NEGATIVE_TICKET, "t1"), (AlertKind.CART_ABANDONMENT, "a1")]


async def test_a_cart_added_and_due_in_one_batch_whose_alert_the_broker_lost_still_fires(
        ) -> None:
    """Verify that a cart whose add and deadline fall in one batch (a backlog after an
    outage) alerts again when the broker failed that batch's alert (it timed out while the
    broker was away): the retry sees the add-to-cart as redelivered, no timer was ever
    stored for the cart, so the fired cart recorded in the state saved before publishing
    must repeat it."""
    producer = FakeAlertProducer(failing=1)
    worker = new_worker(MemoryStore(), producer)
    batch = [message(click("a1", "anna", 1, kind="add_to_cart"), 0),
             message(click("k1", "clock", 40), 1),
             message(purchase("kp", "clock", 40), 0)]
    with pytest.raises(AlertPublishError):
        await process_batch(worker, batch)
    worker.partitions.forget()
    await process_batch(worker, batch)
    assert [(alert.kind, alert.triggered_by) for alert in producer.alerts()] == [
        (AlertKind.CART_ABANDONMENT, "a1")] * 2
    assert producer.queued == []


async def test_two_alerts_of_one_kind_for_one_customer_whose_batch_the_broker_lost_both_fire(
        ) -> None:
    """Verify that when the broker failed a batch's alerts, the retry sends every one of them
    once, also the first of two negative tickets of one customer (which the redelivered
    ticket repeats and the publisher carries over from its failed publish), and the feed
    takes each."""
    producer, store = FakeAlertProducer(failing=2), MemoryStore()
    worker = new_worker(store, producer)
    batch = [message(unhappy("t1", "anna"), 0),
             message(ticket("t2", "anna", 7 * 60, status="resolved", csat=1), 1)]  # cooldown 6 h
    with pytest.raises(AlertPublishError):
        await process_batch(worker, batch)
    worker.partitions.forget()
    await process_batch(worker, batch)
    assert sorted(alert.triggered_by for alert in producer.alerts()) == ["t1", "t1", "t2", "t2"]
    assert producer.queued == []
    assert sorted(alert.triggered_by for alert in store.feed.values()) == ["t1", "t2"]


@pytest.mark.parametrize("batch", [
    [message(unhappy("t1", "anna"), 0),
     message(ticket("t2", "anna", 7 * 60, status="resolved", csat=1), 1)],  # cooldown 6 h
    [message(click("a1", "anna", 1, kind="add_to_cart"), 0),
     message(click("k1", "clock", 40), 1),
     message(click("a2", "anna", 2 * 1440, kind="add_to_cart"), 2),
     message(click("k2", "clock", 2 * 1440 + 40), 3),
     message(purchase("kp", "clock", 2 * 1440 + 40), 0)],
], ids=["two negative tickets", "two abandoned carts"])
async def test_two_alerts_of_one_kind_for_one_customer_repeat_after_a_crash_before_publishing(
        batch: list[RawMessage]) -> None:
    """Verify that a worker that died after saving a batch's rule states and before the
    broker had its alerts loses none of them: the restarted worker (its publisher knows
    nothing of the failed publish) repeats both alerts of one kind that one customer's
    batch fired, the first too, though a later one replaced it as the last of its kind."""
    store = MemoryStore()
    first = new_worker(store, FakeAlertProducer(failing=2))
    with pytest.raises(AlertPublishError):
        await process_batch(first, batch)
    fired = sorted(alert.triggered_by for alert in first.alerts._producer.alerts())  # type: ignore[attr-defined]
    assert len(fired) == 2
    restarted = new_worker(store)
    await process_batch(restarted, batch)
    assert sorted(alert.triggered_by for alert in restarted.alerts._producer.alerts()) == fired  # type: ignore[attr-defined]
    assert sorted(alert.triggered_by for alert in store.feed.values()) == fired


async def test_a_models_drift_alert_the_broker_never_had_goes_out_from_the_restarted_worker(
        ) -> None:
    """Verify that a model's drift alert whose publish failed before the worker died is sent
    by the restarted worker, and reaches the feed once: no redelivered event fires it again
    (the drift was found in the memory of the worker that died)."""
    store = MemoryStore()
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    first = batch_worker(store, settings, models=ScriptedModels(drifts=[triage_drift(0)]),
                         producer=FakeAlertProducer(failing=1))
    with pytest.raises(AlertPublishError):
        await process_batch(first, [message(click("e1", "c1", 0), 0)])
    [drift] = first.alerts._producer.alerts()  # type: ignore[attr-defined]
    assert drift.kind is AlertKind.MODEL_DRIFT
    restarted = batch_worker(store, settings, models=ScriptedModels(),
                             producer=FakeAlertProducer())
    await process_batch(restarted, [message(click("e1", "c1", 0), 0)])
    assert restarted.alerts._producer.alerts() == [drift]  # type: ignore[attr-defined]
    assert list(store.feed.values()) == [drift] and store.unsent == {}
    await process_batch(batch_worker(store, settings, models=ScriptedModels(),
                                     producer=(third := FakeAlertProducer())),
                        [message(click("e2", "c1", 1), 1)])
    assert third.alerts() == [], "sent once the feed has it"


async def test_a_restarted_worker_whose_model_finds_the_same_drift_again_alerts_it_once(
        ) -> None:
    """Verify that the drift rule's cooldown outlives the worker: a model restored from a
    checkpoint learns the same events again and finds the drift again, a little later in
    event time; the restarted worker does not alert it within the cooldown (a day), and
    does once the cooldown has passed."""
    store = MemoryStore()
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    hour, day = 3_600_000, 86_400_000
    sent = []
    for step, found_at in enumerate([0, hour, day + hour]):
        producer = FakeAlertProducer()
        restarted = batch_worker(store, settings, producer=producer,
                                 models=ScriptedModels(drifts=[triage_drift(found_at)]))
        await process_batch(restarted, [message(click(f"e{step}", "c1", step), step)])
        sent.append([alert.triggered_by for alert in producer.alerts()])
    assert sent == [["triage@0"], [], [f"triage@{day + hour}"]]
    assert store.drift_alerted_at == {"triage": day + hour}


async def test_a_cart_abandoned_before_the_customers_next_add_to_cart_in_one_batch_fires(
        ) -> None:
    """Verify that a batch spanning days of event time (the backlog after an outage) fires
    a cart whose deadline passed before the customer's next add-to-cart, as smaller batches
    would have: the later cart does not replace a cart abandoned two days before it."""
    producer = FakeAlertProducer()
    await process_batch(new_worker(MemoryStore(), producer), [
        message(click("a1", "anna", 1, kind="add_to_cart"), 0),
        message(click("k1", "clock", 40), 1),
        message(click("a2", "anna", 2 * 1440, kind="add_to_cart"), 2),
        message(click("k2", "clock", 2 * 1440 + 40), 3)])
    assert [(alert.kind, alert.triggered_by) for alert in producer.alerts()] == [
        (AlertKind.CART_ABANDONMENT, "a1"), (AlertKind.CART_ABANDONMENT, "a2")]


async def test_a_purchase_days_after_an_abandoned_cart_in_one_batch_does_not_undo_it(
        ) -> None:
    """Verify that a purchase dated long after a cart's deadline, in the same batch, does not
    close a cart that was abandoned by then (the cart fires), while a purchase within the
    timeout does close it."""
    producer = FakeAlertProducer()
    await process_batch(new_worker(MemoryStore(), producer), [
        message(click("a1", "anna", 1, kind="add_to_cart"), 0),
        message(click("b1", "bert", 2, kind="add_to_cart"), 1),
        message(purchase("pb", "bert", 20), 2),
        message(click("k1", "clock", 40), 3),
        message(purchase("pa", "anna", 2 * 1440), 4)])
    assert [(alert.kind, alert.triggered_by) for alert in producer.alerts()] == [
        (AlertKind.CART_ABANDONMENT, "a1")]


def batches_timed(step: str) -> float:
    return REGISTRY.get_sample_value("crm_worker_batch_step_seconds_count",
                                     {"step": step}) or 0.0


async def test_every_batch_is_timed_in_each_of_its_steps() -> None:
    """Verify that a batch reports its time in each step, so an operator can tell a batch
    that waited (on Redis, Kafka, a core) from one that worked, and where."""
    before = {step: batches_timed(step) for step in BATCH_STEP_NAMES}
    await process_batch(new_worker(MemoryStore()), [message(unhappy(), 0)])
    assert {step: batches_timed(step) - before[step] for step in BATCH_STEP_NAMES} == (
        dict.fromkeys(BATCH_STEP_NAMES, 1.0))


def trained_step_and_three_clicks() -> tuple[ModelStep, list[AnyEvent], Customer]:
    """A model step with trained models, and customer c1 with three clicks as one batch
    leaves them."""
    from tests.trained_models import trained_bundle

    events = [click(f"e{i}", "c1", i) for i in range(3)]
    store = MemoryStore()
    for event in events:
        store.events[("default", "c1")][event.event_id] = event
    return ModelStep(bundle=trained_bundle()), events, store.customer(("default", "c1"))


def test_a_customer_moves_to_another_segment_once_per_batch() -> None:
    """Verify that of a customer's events in one batch only the first carries the move from
    their stored segment (the others: no move), so the rule sees one move, not one per
    event."""
    step, events, customer = trained_step_and_three_clicks()
    stored = step.learn_and_score(
        [ModelEvent(events[0], ("default", "c1"), 0)], {("default", "c1"): customer}, {},
        None).updates[0].scores["segment"]
    assert stored is not None
    moved = Customer(profile=customer.profile, previous_segment=stored + 1)
    updates = step.learn_and_score([ModelEvent(e, ("default", "c1"), 0) for e in events],
                                   {("default", "c1"): moved}, {}, None).updates
    assert [u.scores["previous_segment"] for u in updates] == [stored + 1, stored, stored]


def test_the_churn_rule_sees_a_customers_score_once_per_batch() -> None:
    """Verify that of a customer's events in one batch only the first carries their churn
    probability: the batch scores them once, and the rule's K consecutive scores must not be
    one score counted K times."""
    step, events, customer = trained_step_and_three_clicks()
    updates = step.learn_and_score([ModelEvent(e, ("default", "c1"), 0) for e in events],
                                   {("default", "c1"): customer}, {}, None).updates
    first, *later = [u.scores.get("churn_probability") for u in updates]
    assert first is not None and later == [None, None]


def test_a_visitor_merged_into_a_customer_leaves_nothing_in_the_recommender() -> None:
    """Verify that a visitor's views teach the recommender, and that once the visitor is
    merged into a customer no list is due for them and the recommender keeps no row under
    their id (kept, such rows would grow with every visitor who ever logged in)."""
    from agents.recommending import apply_work
    from schemas.events import ClickEvent
    from tests.unit.support import at

    step = ModelStep(bundle=ModelBundle())
    visitor = ("default", "anon:v1")
    views = [ClickEvent(event_id=f"v{i}", anonymous_id="v1", type="click", kind="product_view",
                        product_id=f"p-{i}", occurred_at=at(i)) for i in range(3)]
    store = MemoryStore()
    for event in views:
        store.events[visitor][event.event_id] = event
    step.learn_and_score([ModelEvent(e, visitor, 0) for e in views],
                         {visitor: store.customer(visitor)}, {}, None)
    assert step.lists_due == 1
    recommender = step.bundle.recommender
    apply_work(recommender, step.take_recommendation_work())
    assert "anon:v1" in recommender.interest

    step.learn_and_score([ModelEvent(click("v3", "anon:v1", 4, "product_view"), visitor, 0)],
                         {visitor: store.customer(visitor)}, {}, None)
    step.forget_visitors([visitor])
    work = step.take_recommendation_work()
    assert work.erased == [visitor] and visitor not in work.due and step.lists_due == 0
    apply_work(recommender, work)
    assert "anon:v1" not in recommender.interest
    assert recommender.mf.i_latents  # what the views taught of the products stays
