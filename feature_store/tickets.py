"""Support tickets as triaged: what the worker writes and the API reads.

A ticket's status is the customer's ``tickets`` hash, kept by the per-customer script (the
latest by event time wins, whatever the arrival order). Its triage (category, urgency,
sentiment of its text) is a JSON field of the customer's ``triage`` hash, written when a
batch commits an event of the ticket that carries text: the latest such event of the batch.
Both keys are the customer's, so erasure deletes them with the rest; the ticket's owner
(``GET /v1/tickets/{id}`` starts there) is one small key per ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio.client import Pipeline

from feature_store.keys import CustomerKeys, ticket_owner_key
from feature_store.replies import text
from schemas.profile import Ticket


@dataclass(frozen=True)
class TicketRecord:
    """One ticket's triage, as the models gave it for its latest text."""

    tenant: str
    customer_id: str
    ticket_id: str
    channel: str
    subject: str
    category: str
    category_probability: float
    category_source: str
    urgency: float | None
    sentiment: float | None
    at_ms: int


def queue_ticket_writes(pipe: Pipeline, record: TicketRecord) -> None:
    keys = CustomerKeys(record.tenant, record.customer_id)
    fields = asdict(record)
    del fields["tenant"], fields["customer_id"], fields["ticket_id"]
    pipe.hset(keys.key("triage"), record.ticket_id, orjson.dumps(fields))
    pipe.set(ticket_owner_key(record.tenant, record.ticket_id), record.customer_id)


def ticket_of(ticket_id: str, customer_id: str, status: Any, triage: Any) -> Ticket:
    """A ticket from its status value (``"<at ms>|<event id>|<status>"``) and triage JSON
    (either may be missing)."""
    fields: dict[str, Any] = orjson.loads(triage) if triage else {}
    updated_ms = fields.pop("at_ms", None)
    state = "unknown"
    if status is not None:
        at, _, rest = text(status).partition("|")
        state = rest.rpartition("|")[2]
        updated_ms = max(int(at), updated_ms or 0)
    return Ticket(ticket_id=ticket_id, customer_id=customer_id, status=state,
                  updated_at=datetime.fromtimestamp(updated_ms / 1000, tz=UTC)
                  if updated_ms is not None else None, **fields)


async def read_ticket(redis: Any, tenant: str, ticket_id: str) -> Ticket | None:
    """One ticket, or None if no event of it has been processed."""
    owner = await redis.get(ticket_owner_key(tenant, ticket_id))
    if owner is None:
        return None
    keys = CustomerKeys(tenant, text(owner))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.key("tickets"), ticket_id)
        pipe.hget(keys.key("triage"), ticket_id)
        status, triage = await pipe.execute()
    if status is None and triage is None:  # the customer was erased since
        return None
    return ticket_of(ticket_id, text(owner), status, triage)


async def read_customer_tickets(redis: Any, tenant: str, customer_id: str) -> list[Ticket]:
    """A customer's tickets: open ones first, then the newest first."""
    keys = CustomerKeys(tenant, customer_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.key("tickets"))
        pipe.hgetall(keys.key("triage"))
        statuses, triages = await pipe.execute()
    ids = {text(k) for k in statuses} | {text(k) for k in triages}
    tickets = [ticket_of(ticket_id, customer_id, statuses.get(ticket_id.encode()),
                         triages.get(ticket_id.encode())) for ticket_id in ids]
    return sorted(tickets, key=lambda t: (t.status == "resolved",
                                          -(t.updated_at.timestamp() if t.updated_at else 0)))


def owner_keys(tenant: str, ticket_ids: Sequence[str]) -> list[str]:
    """The owner keys of a customer's tickets (erasure deletes them)."""
    return [ticket_owner_key(tenant, ticket_id) for ticket_id in ticket_ids]
