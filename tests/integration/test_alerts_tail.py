"""``crm alerts tail``: alerts from the real broker as JSON lines, filtered by kind."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson
import pytest

from agents.alert_config import AlertConfig
from agents.alert_rules import evaluate_update
from agents.publishing import AlertPublisher
from feature_store.rule_state import CustomerAlertState
from schemas.records import Alert
from stream.alerts_consumer import tail_alerts
from stream.settings import Settings
from tests.unit.support import click, ticket, update


async def publish_some(settings: Settings) -> list[Alert]:
    """Three alerts as the rules decide them, published as the batch publishes them."""
    updates = [update(ticket("t1", "c1", 0), sentiment=-0.9, urgency=0.8),
               update(click("e1", "c2", 0), segment=2, previous_segment=1),
               update(ticket("t2", "c3", 0, status="resolved", csat=1))]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    alerts = [decision.alert for u in updates
              for decision in evaluate_update(u, CustomerAlertState(), AlertConfig(), now=now)]
    publisher = AlertPublisher(settings=settings)
    await publisher.publish(alerts)
    publisher.close()
    return alerts


async def test_tail_prints_alerts_as_json_lines_filtered_by_kind(settings: Settings) -> None:
    """Verify that the tail prints each alert as one JSON line, only of the asked kind."""
    alerts = await publish_some(settings)
    assert len(alerts) == 3
    out = io.StringIO()
    printed = tail_alerts(settings, "negative_ticket", True, out=out, max_messages=10,
                          idle_timeout_s=5)
    lines = out.getvalue().splitlines()
    assert printed == len(lines) == 2
    received = [Alert.model_validate(orjson.loads(line)) for line in lines]
    assert sorted(a.alert_id for a in received) == sorted(
        a.alert_id for a in alerts if a.kind.value == "negative_ticket")

    everything = io.StringIO()
    assert tail_alerts(settings, None, True, out=everything, max_messages=3) == 3


async def test_a_named_group_resumes_where_it_stopped(settings: Settings) -> None:
    """Verify that a tail with a group commits what it printed, so a restart skips it."""
    await publish_some(settings)
    group = f"{settings.app_id}-marketing"
    first = io.StringIO()
    assert tail_alerts(settings, None, True, out=first, max_messages=3, group_id=group) == 3
    again = io.StringIO()
    assert tail_alerts(settings, None, True, out=again, group_id=group, idle_timeout_s=4) == 0


async def test_a_repeated_alert_id_is_printed_once(settings: Settings) -> None:
    """Verify that alerts produced again after a crash (same ids, a fresh publisher) are
    dropped by the tail, which prints each alert id once."""
    alerts = await publish_some(settings)
    await publish_some(settings)  # the batch repeated after a crash: the same three ids again
    out = io.StringIO()
    assert tail_alerts(settings, None, True, out=out, idle_timeout_s=4) == 3
    printed = [orjson.loads(line)["alert_id"] for line in out.getvalue().splitlines()]
    assert sorted(printed) == sorted(a.alert_id for a in alerts)


def test_an_unknown_kind_is_refused(settings: Settings) -> None:
    """Verify that a misspelt kind fails fast instead of printing nothing forever."""
    with pytest.raises(ValueError):
        tail_alerts(settings, "churn", True, out=io.StringIO(), max_messages=1)
