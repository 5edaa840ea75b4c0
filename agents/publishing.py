"""The batch's publish step: alerts to ``crm.alerts``, acknowledged by the broker.

An idempotent producer sends each alert keyed by customer and is flushed before the step
returns, so a batch is committed only once the broker has its alerts; a crash before the
commit repeats the batch, and the same alert ids go out again (counted in
``crm_alerts_repeated_total`` when the rules knew them for repeats). An alert id the broker
acknowledged to this publisher lately is not produced again: a batch retried in the same
process after its commit failed produces none of its alerts twice. The feed the API reads
takes each id once whatever happens (:mod:`feature_store.feed`).

A flush that times out leaves its alerts queued in the producer, which keeps sending them:
their ids stay in flight until the broker answers, and a retry of the batch waits for them
rather than produce them again (which would put each twice on the topic). An alert the
broker refused (timed out while it was away) goes out with the next publish, whatever that
one holds: the retried batch repeats what its triggers fired (the rule state saved before
publishing remembers that, :attr:`~feature_store.rule_state.CustomerAlertState.earlier`),
but not every alert has a trigger the rules see again (a model's drift alert). Those are
saved in Redis before their publish, and a restarted worker hands its publisher what its
predecessor left unsent (:meth:`AlertPublisher.carry`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter

from schemas.records import Alert
from schemas.topics import ALERTS
from stream.delivered import DeliveredIds
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)

#: How many alert ids the broker acknowledged a publisher remembers, so that a batch retried
#: in the same process does not produce them again (a batch holds at most a few hundred).
ACKNOWLEDGED_IDS = 10_000

ALERTS_PUBLISHED = Counter("crm_alerts_published",
                           "Alerts produced to crm.alerts (repeats included)", ["kind"])
ALERTS_REPEATED = Counter(
    "crm_alerts_repeated",
    "Alerts produced to crm.alerts again with the same id: their trigger was redelivered "
    "after a crash, so the broker may have them already", ["kind"])


class AlertPublishError(RuntimeError):
    """Some alerts were not acknowledged by the broker; the batch must not be committed."""


class KafkaProducerLike(Protocol):
    def produce(self, topic: str, value: bytes, key: str, on_delivery: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


class AlertPublisher:
    """Produces alerts to ``crm.alerts`` and waits for the broker."""

    def __init__(self, *, settings: Settings, producer: KafkaProducerLike | None = None,
                 timeout_s: float = 30.0) -> None:
        self._producer: Any = producer or Producer({
            **kafka_client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
        })
        self.topic = settings.topic(ALERTS)
        self.timeout_s = timeout_s
        self._failed = 0
        self._acknowledged = DeliveredIds(ACKNOWLEDGED_IDS)
        # Ids produced whose delivery the broker has not answered yet. Delivery callbacks run
        # in the flushing thread.
        self._in_flight: set[str] = set()
        self._delivery_lock = threading.Lock()
        #: The alerts of a publish that failed, by id: they go out with the next one.
        self._undelivered: dict[str, Alert] = {}

    async def publish(self, alerts: Sequence[Alert], repeats: Collection[str] = ()
                      ) -> list[Alert]:
        """Produce ``alerts`` keyed by customer and wait until the broker has them all
        (those it acknowledged to this publisher before are not produced again); raises
        :class:`AlertPublishError` otherwise. ``repeats`` are ids the rules knew for
        repeats of an earlier publication. Returns the alerts of an earlier failed publish
        that went out with these (for the caller's feed)."""
        ids = {alert.alert_id for alert in alerts}
        with self._delivery_lock:
            carried = [alert for alert_id, alert in self._undelivered.items()
                       if alert_id not in ids]
            alerts = [*alerts, *carried]
            waiting = any(alert.alert_id in self._in_flight for alert in alerts)
            sent = [alert for alert in alerts if alert.alert_id not in self._acknowledged
                    and alert.alert_id not in self._in_flight]
            self._in_flight.update(alert.alert_id for alert in sent)
        if not sent and not waiting:
            self._settle(alerts, unanswered=set())  # all acknowledged
            return carried
        for alert in sent:
            self._produce(alert.alert_id, alert.customer_id,
                          orjson.dumps(alert.model_dump(mode="json")))
        remaining = await asyncio.get_running_loop().run_in_executor(
            None, self._producer.flush, self.timeout_s)
        with self._delivery_lock:
            failed, self._failed = self._failed, 0
            unanswered = {alert.alert_id for alert in alerts
                          if alert.alert_id not in self._acknowledged}
        self._settle(alerts, unanswered)
        if remaining or failed or unanswered:
            raise AlertPublishError(f"{remaining} alerts unsent, {failed} failed, "
                                    f"{len(unanswered)} of the batch not acknowledged")
        for alert in sent:
            ALERTS_PUBLISHED.labels(kind=alert.kind.value).inc()
            if alert.alert_id in repeats:
                ALERTS_REPEATED.labels(kind=alert.kind.value).inc()
        log.info("published %d alerts to %s", len(sent), self.topic)
        return carried

    def carry(self, alerts: Sequence[Alert]) -> None:
        """Send ``alerts`` with the next publish (an earlier worker could not)."""
        with self._delivery_lock:
            for alert in alerts:
                self._undelivered.setdefault(alert.alert_id, alert)

    def _settle(self, alerts: Sequence[Alert], unanswered: set[str]) -> None:
        """Carry ``alerts`` the broker did not acknowledge over to the next publish, and no
        longer those it did. Updated in place under the lock: the batch and the silence sweep
        both publish, and neither may drop what the other carries."""
        with self._delivery_lock:
            for alert in alerts:
                if alert.alert_id in unanswered:
                    self._undelivered[alert.alert_id] = alert
                else:
                    self._undelivered.pop(alert.alert_id, None)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)

    def _produce(self, alert_id: str, key: str, payload: bytes) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value=payload, key=key,
                                       on_delivery=functools.partial(self._delivered, alert_id))
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _delivered(self, alert_id: str, error: KafkaError | None, message: Message) -> None:
        with self._delivery_lock:
            self._in_flight.discard(alert_id)
            if error is None:
                self._acknowledged.add(alert_id)
                return
            self._failed += 1
        log.error("alert %s for %s could not be delivered: %s", alert_id, message.key(),
                  error.str())
