"""What the alert rules remember per customer between updates, stored as one JSON under the
customer's hash tag (``crm:{tenant/customer}:alerts``): read with the customer in the round
trip that applies a batch, written back in the round trip that commits it.

>>> state = CustomerAlertState(churn_streak=2, consent=False)
>>> CustomerAlertState.from_json(state.to_json()) == state
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.records import Alert, AlertKind

#: At most this many alerts that a later one of the same kind replaced in ``fired`` are kept
#: for redeliveries (see :attr:`CustomerAlertState.earlier`).
EARLIER_LIMIT = 16


@dataclass
class OpenCart:
    """An add-to-cart waiting for a purchase until ``deadline_ms`` (event time)."""

    event_id: str
    at_ms: int
    deadline_ms: int
    partition: int
    product_id: str | None = None


@dataclass
class FiredAlert:
    """An alert sent: its trigger and time (for cooldowns and redeliveries) and the record
    itself, JSON-ready, so a redelivery repeats it word for word."""

    triggered_by: str
    occurred_at_ms: int
    alert: dict[str, Any]

    def as_alert(self) -> Alert:
        return Alert.model_validate(self.alert)


@dataclass
class CustomerAlertState:
    """What the rules remember about one customer between updates (stored as one JSON)."""

    churn_streak: int = 0
    churn_armed: bool = True
    high_value_armed: bool = True
    consent: bool | None = None
    last_segment: int | None = None
    last_segment_label: str | None = None
    cart: OpenCart | None = None
    seen: list[str] = field(default_factory=list)
    #: The last alert sent per kind (its cooldown starts there).
    fired: dict[AlertKind, FiredAlert] = field(default_factory=dict)
    #: Alerts a later one of the same kind replaced in ``fired``, while their trigger is
    #: still among ``seen``. The batch that fired two of a kind (two negative tickets; a cart
    #: abandoned days before the next) saves this state before the broker has its alerts; if
    #: the worker dies in between, the redelivered batch must repeat both, and only a
    #: redelivery recognised by ``seen`` can ask.
    earlier: list[FiredAlert] = field(default_factory=list)
    #: ``seen`` as a set, made when first asked (not stored).
    _seen_set: set[str] | None = field(default=None, init=False, repr=False, compare=False)

    def remember(self, trigger: str, limit: int) -> bool:
        """Add ``trigger`` to the last ``limit`` triggers seen; ``False`` if it was among
        them already (a redelivery). Every event of an active customer asks, and a scan of
        the list of 64 took longer than the rest of the rules together."""
        seen = self._seen_ids()
        if trigger in seen:
            return False
        self.seen.append(trigger)
        seen.add(trigger)
        if len(self.seen) > limit:
            seen.difference_update(self.seen[:-limit])
            del self.seen[:-limit]
            self._keep_earlier_seen()
        return True

    def record(self, kind: AlertKind, alert: FiredAlert) -> None:
        """Remember ``alert`` as the last of its kind; the one it replaces joins
        :attr:`earlier`, which keeps only alerts whose trigger is still among ``seen``."""
        previous = self.fired.get(kind)
        self.fired[kind] = alert
        if previous is not None:
            self.earlier.append(previous)
        self._keep_earlier_seen()

    def _seen_ids(self) -> set[str]:
        if self._seen_set is None:
            self._seen_set = set(self.seen)
        return self._seen_set

    def _keep_earlier_seen(self) -> None:
        """Drop from :attr:`earlier` the alerts whose trigger left ``seen`` (no redelivery
        can ask for them any more), and all but the last :data:`EARLIER_LIMIT`."""
        if self.earlier:
            seen = self._seen_ids()
            self.earlier = [fired for fired in self.earlier
                            if fired.triggered_by in seen][-EARLIER_LIMIT:]

    def fired_by(self, trigger: str, kind: AlertKind | None = None) -> list[FiredAlert]:
        """The alerts ``trigger`` fired (of ``kind``, if given), as far as this state
        remembers: a redelivery repeats them."""
        return [fired for fired in (*self.fired.values(), *self.earlier)
                if fired.triggered_by == trigger and kind in (None, fired.alert["kind"])]

    def to_json(self) -> bytes:
        return orjson.dumps({
            "churn_streak": self.churn_streak, "churn_armed": self.churn_armed,
            "high_value_armed": self.high_value_armed, "consent": self.consent,
            "last_segment": self.last_segment, "last_segment_label": self.last_segment_label,
            "cart": self.cart.__dict__ if self.cart else None, "seen": self.seen,
            "fired": {kind.value: fired.__dict__ for kind, fired in self.fired.items()},
            **({"earlier": [fired.__dict__ for fired in self.earlier]} if self.earlier else {}),
        })

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> CustomerAlertState:
        if not raw:
            return cls()
        data = orjson.loads(raw)
        cart = data.get("cart")
        return cls(
            churn_streak=data.get("churn_streak", 0), churn_armed=data.get("churn_armed", True),
            high_value_armed=data.get("high_value_armed", True), consent=data.get("consent"),
            last_segment=data.get("last_segment"),
            last_segment_label=data.get("last_segment_label"),
            cart=OpenCart(**cart) if cart else None, seen=list(data.get("seen", [])),
            fired={AlertKind(kind): FiredAlert(**fired)
                   for kind, fired in data.get("fired", {}).items()},
            earlier=[FiredAlert(**fired) for fired in data.get("earlier", ())],
        )
