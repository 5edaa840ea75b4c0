"""Topic names: a contract with the shops and marketing tools, never renamed."""

from __future__ import annotations

CLICKS = "shop.clicks"
PURCHASES = "shop.purchases"
TICKETS = "support.tickets"
ALERTS = "crm.alerts"
DEADLETTER = "crm.deadletter"
ERASURE = "crm.erasure"

INPUT_TOPICS = (CLICKS, PURCHASES, TICKETS)
ALL_TOPICS = (*INPUT_TOPICS, ALERTS, DEADLETTER, ERASURE)
