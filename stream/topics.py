"""Create the system's topics idempotently, refusing an existing topic of another shape."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.topics import ALL_TOPICS
from stream.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)


class TopicMismatchError(RuntimeError):
    """An existing topic has another partition count than the settings ask for."""


@dataclass(frozen=True)
class TopicOutcome:
    topic: str
    partitions: int
    created: bool


def create_topics(settings: Settings, *, timeout: float = 30.0) -> list[TopicOutcome]:
    """Create every topic with ``settings.partitions``; existing matching topics are kept.

    Raises :class:`TopicMismatchError` naming every topic whose partition count differs,
    since silently using it would break the co-partitioning of the input topics by customer.
    """
    admin = AdminClient(kafka_client_config(settings))
    existing = admin.list_topics(timeout=timeout).topics
    outcomes: list[TopicOutcome] = []
    mismatched: list[str] = []
    to_create: list[NewTopic] = []
    for topic in (settings.topic(name) for name in ALL_TOPICS):
        if topic in existing:
            count = len(existing[topic].partitions)
            if count != settings.partitions:
                mismatched.append(f"{topic} has {count} partitions, settings ask for "
                                  f"{settings.partitions}")
            outcomes.append(TopicOutcome(topic, count, created=False))
        else:
            to_create.append(NewTopic(topic, settings.partitions, settings.replication_factor))
    if mismatched:
        raise TopicMismatchError("; ".join(mismatched))
    if to_create:
        futures = admin.create_topics(to_create, request_timeout=timeout)
        for topic, future in futures.items():
            try:
                future.result(timeout)
                created = True
            except KafkaException as error:
                if error.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent creator won
                    raise
                created = False
            log.info("topic %s %s", topic, "created" if created else "already exists")
            outcomes.append(TopicOutcome(topic, settings.partitions, created=created))
    order = [settings.topic(name) for name in ALL_TOPICS]
    return sorted(outcomes, key=lambda outcome: order.index(outcome.topic))
