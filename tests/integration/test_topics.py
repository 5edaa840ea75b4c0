"""``crm topics create`` against a real broker: idempotent, and strict about partitions."""

from __future__ import annotations

import pytest

from schemas.topics import ALL_TOPICS
from stream.settings import Settings
from stream.topics import TopicMismatchError, create_topics


def test_creating_topics_twice_is_harmless(settings: Settings) -> None:
    """Verify that a second run finds every topic with the configured partitions."""
    outcomes = create_topics(settings)  # the fixture already created them once
    assert [o.topic for o in outcomes] == [settings.topic(name) for name in ALL_TOPICS]
    assert all(not o.created and o.partitions == settings.partitions for o in outcomes)


def test_an_existing_topic_with_other_partitions_is_an_error(settings: Settings) -> None:
    """Verify that a partition-count mismatch is reported, never silently used."""
    other = settings.model_copy(update={"partitions": settings.partitions + 1})
    with pytest.raises(TopicMismatchError, match=r"shop\.clicks has 3 partitions"):
        create_topics(other)
