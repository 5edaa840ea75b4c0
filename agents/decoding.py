"""The batch's decode step: raw messages in, typed events and dead letters out.

A message at or below its partition's recorded progress was processed by a finished batch
(a redelivery after a crash or a rebalance) and is skipped; every other one is decoded
(:func:`stream.codec.decode`): an invalid one becomes a dead letter with the reason, a
valid one an event of the batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from feature_store import Progress
from schemas.events import AnyEvent
from schemas.problems import Problem
from schemas.records import DeadLetter
from stream.codec import dead_letter_for, decode

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class RawMessage(NamedTuple):
    """The part of a Kafka message the worker needs. (The worker's per-event records are
    named tuples: immutable like frozen dataclasses, made in a third of the time.)"""

    topic: str
    partition: int
    offset: int
    value: bytes


class BatchEvent(NamedTuple):
    """A valid event and the message it came in."""

    message: RawMessage
    event: AnyEvent


@dataclass
class Decoded:
    """A batch decoded: its valid ``events`` (in arrival order), its ``dead_letters``, what
    happened to the messages skipped or dead-lettered (by topic and outcome), and the last
    offset of each partition among the messages not skipped."""

    events: list[BatchEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_offsets: dict[Partition, int] = field(default_factory=dict)


def decode_batch(messages: Sequence[RawMessage], progress: Mapping[Partition, Progress], *,
                 max_event_bytes: int, now: datetime) -> Decoded:
    """Decode the messages beyond their partition's ``progress``."""
    decoded = Decoded()
    for message in messages:
        key = (message.topic, message.partition)
        if message.offset <= progress[key].done:
            decoded.outcomes[(message.topic, "duplicate")] += 1
            continue
        decoded.last_offsets[key] = max(decoded.last_offsets.get(key, -1), message.offset)
        event = decode(message.value, max_bytes=max_event_bytes, now=now)
        if isinstance(event, Problem):
            decoded.dead_letters.append(dead_letter_for(
                data=message.value, problem=event, topic=message.topic,
                partition=message.partition, offset=message.offset, seen_at=now))
            decoded.outcomes[(message.topic, "dead_letter")] += 1
            log.info("dead letter %s/%d@%d: %s", message.topic, message.partition,
                     message.offset, event.message)
        else:
            decoded.events.append(BatchEvent(message, event))
    return decoded
