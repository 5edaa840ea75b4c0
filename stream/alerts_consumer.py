"""``crm alerts tail``: follow ``crm.alerts`` and print each alert as one JSON line.

For marketing tools and people at a terminal: ``crm alerts tail --kind churn_risk | jq``.
Without a group the tail is ephemeral (it reads every partition directly, commits nothing)
and starts at the end of the topic, or at its beginning with ``from_beginning``. With a group
it joins that consumer group and commits what it printed, so a restarted tail resumes where
it stopped (``from_beginning`` then only matters the first time). The topic is at least once:
after a worker crash the same ``alert_id`` can appear twice. The tail prints an id once: it
drops a repeat of any of the last ``DELIVERED_IDS`` ids it printed (a restarted tail
remembers nothing, so a consumer that must never act twice still deduplicates by id).
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import TextIO

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from schemas.records import AlertKind
from schemas.topics import ALERTS
from stream.delivered import DeliveredIds
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)

#: How many printed alert ids the tail remembers to drop repeats (about 6 MB; a repeat
#: follows its first copy within a batch or two of the worker that crashed).
DELIVERED_IDS = 50_000


def tail_alerts(
    settings: Settings,
    kind: str | None,
    from_beginning: bool,
    out: TextIO | None = None,
    max_messages: int | None = None,
    *,
    group_id: str | None = None,
    idle_timeout_s: float | None = None,
    poll_timeout_s: float = 0.5,
) -> int:
    """Print alerts (optionally only of ``kind``) as JSON lines; returns how many were printed.

    Stops after ``max_messages`` printed alerts, after ``idle_timeout_s`` seconds without a
    new message once reading has started (if given), or on Ctrl-C. Raises ``ValueError`` for
    an unknown ``kind``.
    """
    wanted = AlertKind(kind).value if kind is not None else None
    out = out if out is not None else sys.stdout  # looked up now: click's runner swaps it
    durable = group_id is not None
    topic = settings.topic(ALERTS)
    consumer = Consumer({
        **kafka_client_config(settings),
        "group.id": group_id or f"crm-alerts-tail-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": durable,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "session.timeout.ms": max(6000, int(settings.session_timeout_s * 1000)),
    })
    printed = 0
    delivered = DeliveredIds(DELIVERED_IDS)
    last_message = time.monotonic()

    def started(*_: object) -> None:
        nonlocal last_message
        last_message = time.monotonic()

    try:
        if durable:
            consumer.subscribe([topic], on_assign=started)
        else:
            metadata = consumer.list_topics(topic, timeout=30).topics[topic]
            if metadata.error is not None:
                raise RuntimeError(f"cannot read {topic}: {metadata.error.str()}")
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            consumer.assign([TopicPartition(topic, partition, start)
                             for partition in sorted(metadata.partitions)])
            started()
        while max_messages is None or printed < max_messages:
            message = consumer.poll(poll_timeout_s)
            if message is None:
                if idle_timeout_s is not None and time.monotonic() - last_message > idle_timeout_s:
                    break
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("alerts consumer: %s", error.str())
                continue
            last_message = time.monotonic()
            value = message.value() or b""
            try:
                alert = orjson.loads(value)
            except orjson.JSONDecodeError:
                alert = None
            if not isinstance(alert, dict):
                log.warning("skipping a message that is not a JSON object at %s/%d@%d",
                            message.topic(), message.partition(), message.offset())
                continue
            if durable:
                consumer.store_offsets(message)
            if wanted is not None and alert.get("kind") != wanted:
                continue
            alert_id = alert.get("alert_id")
            if isinstance(alert_id, str) and not delivered.first_time(alert_id):
                log.info("dropped a repeat of alert %s at %s/%d@%d", alert_id,
                         message.topic(), message.partition(), message.offset())
                continue
            out.write(orjson.dumps(alert).decode() + "\n")
            out.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return printed
