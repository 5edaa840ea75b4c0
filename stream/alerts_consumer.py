"""``crm alerts tail``: follow ``crm.alerts`` and print each alert as one JSON line.

For marketing tools and people at a terminal: ``crm alerts tail --kind churn_risk | jq``.
Without a group the tail is ephemeral (a fresh consumer group, nothing committed) and starts
at the end of the topic, or at its beginning with ``from_beginning``. With a group it commits
what it printed, so a restarted tail resumes where it stopped. Alerts are delivered at least
once: after a worker crash the same ``alert_id`` can appear twice, so deduplicate by it.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import TextIO

import orjson
from confluent_kafka import Consumer, KafkaError

from schemas.records import AlertKind
from schemas.topics import ALERTS
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)


def tail_alerts(
    settings: Settings,
    kind: str | None,
    from_beginning: bool,
    out: TextIO = sys.stdout,
    max_messages: int | None = None,
    *,
    group_id: str | None = None,
    idle_timeout_s: float | None = None,
    poll_timeout_s: float = 0.5,
) -> int:
    """Print alerts (optionally only of ``kind``) as JSON lines; returns how many were printed.

    Stops after ``max_messages`` printed alerts, after ``idle_timeout_s`` seconds without a
    new message (if given), or on Ctrl-C. Raises ``ValueError`` for an unknown ``kind``.
    """
    wanted = AlertKind(kind).value if kind is not None else None
    durable = group_id is not None
    consumer = Consumer({
        **kafka_client_config(settings),
        "group.id": group_id or f"crm-alerts-tail-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": durable,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    })
    consumer.subscribe([settings.topic(ALERTS)])
    printed = 0
    last_message = time.monotonic()
    try:
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
            out.write(orjson.dumps(alert).decode() + "\n")
            out.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return printed
