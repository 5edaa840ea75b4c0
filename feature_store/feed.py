"""The alerts' feed the API reads: a capped Redis stream that takes each alert id once.

The worker appends a batch's alerts once the broker has acknowledged them, in the round trip
that records the batch's progress; a batch repeated after a crash appends the same ids
again, and a marker per id (kept :data:`FEED_MARKER_TTL_S`) drops the repeats.

A batch repeated after a crash repeats the alerts its events fire, but a model's drift is
found once, in the memory of the worker that learnt from the events: an alert of
:data:`KEPT_UNTIL_FED` kinds is saved in Redis (:data:`UNSENT_ALERTS_KEY`) before it is
published and dropped there by its append to the feed, so a restarted worker sends what
its predecessor could not. With it is saved when the model's drift was alerted
(:data:`DRIFT_ALERTED_KEY`): the rule's cooldown, so a restarted worker whose model finds
the drift again does not alert it twice (:meth:`FeatureStore.carried_over`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from feature_store.keys import (
    ALERTS_STREAM_KEY,
    DRIFT_ALERTED_KEY,
    UNSENT_ALERTS_KEY,
    alert_feed_marker_key,
)
from feature_store.replies import text
from schemas.records import Alert, AlertKind

#: The kinds of alert no redelivered event fires again.
KEPT_UNTIL_FED = frozenset({AlertKind.MODEL_DRIFT})

ALERTS_STREAM_MAXLEN = 10_000
#: How long the feed remembers that an alert id was appended (drops crash repeats).
FEED_MARKER_TTL_S = 2 * 86_400

# Append an alert to the feed once per id. Both keys share one slot: the marker's hash tag
# is the stream's whole name.
FEED_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
                    'alert', ARGV[1], 'tenant', ARGV[2], 'kind', ARGV[3])
end
return false
"""


def queue_feed(pipe: Any, alert: Alert) -> None:
    """Queue the append of one alert. EVAL, not EVALSHA: nothing to reload after a Redis
    restart, and a round trip that also records progress must never be sent twice."""
    pipe.eval(FEED_SCRIPT, 2, alert_feed_marker_key(alert.alert_id), ALERTS_STREAM_KEY,
              orjson.dumps(alert.model_dump(mode="json")), alert.tenant, alert.kind.value,
              FEED_MARKER_TTL_S, ALERTS_STREAM_MAXLEN)
    if alert.kind in KEPT_UNTIL_FED:
        pipe.hdel(UNSENT_ALERTS_KEY, alert.alert_id)


@dataclass(frozen=True)
class CarriedOver:
    """What the workers before this one left of their alerts: those not in the feed yet (of
    :data:`KEPT_UNTIL_FED` kinds), and the event time (ms) of each model's last drift alert."""

    unsent: list[Alert] = field(default_factory=list)
    drift_alerted_at: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, unsent: Mapping[Any, Any], drift_alerted_at: Mapping[Any, Any]
                 ) -> CarriedOver:
        """From the replies of HGETALL on the two hashes."""
        return cls(unsent=sorted((Alert.model_validate_json(value) for value in unsent.values()),
                                 key=lambda alert: alert.alert_id),
                   drift_alerted_at={text(model): int(at_ms)
                                     for model, at_ms in drift_alerted_at.items()})


def queue_unsent(pipe: Any, alerts: Sequence[Alert],
                 drift_alerted_at: Mapping[str, int]) -> None:
    """Queue the save of alerts (of :data:`KEPT_UNTIL_FED` kinds) about to be published,
    and of the drift rule's cooldowns (model -> event time of its last drift alert)."""
    pipe.hset(UNSENT_ALERTS_KEY, mapping={
        alert.alert_id: orjson.dumps(alert.model_dump(mode="json")) for alert in alerts})
    if drift_alerted_at:
        pipe.hset(DRIFT_ALERTED_KEY, mapping=dict(drift_alerted_at))
