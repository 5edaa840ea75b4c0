"""Write one JSON Schema file per public record (``crm schemas export DIR``)."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel, TypeAdapter

from schemas.events import EVENT_ADAPTER, ClickEvent, PurchaseEvent, TicketEvent
from schemas.records import Alert, DeadLetter, ErasureRequest

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

RECORDS: dict[str, type[BaseModel] | TypeAdapter] = {  # type: ignore[type-arg]
    "event": EVENT_ADAPTER,
    "click": ClickEvent,
    "purchase": PurchaseEvent,
    "ticket": TicketEvent,
    "alert": Alert,
    "dead_letter": DeadLetter,
    "erasure_request": ErasureRequest,
}


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every record into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, record in RECORDS.items():
        if isinstance(record, TypeAdapter):
            schema = record.json_schema()
        else:
            schema = record.model_json_schema()
        schema = {"$schema": JSON_SCHEMA_DIALECT, "title": name, **schema}
        path = directory / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        written.append(path)
    return written
