"""The OpenAPI document's security: how to present an API key, and which operations need one.

The schemes are written into the document here instead of being declared as FastAPI security
dependencies (``HTTPBearer``, ``APIKeyHeader``): as dependencies, FastAPI would resolve both
on every request only to parse headers that :func:`api.auth.presented_key` parses anyway
(measured: about 60 µs of the hot profile read's 600). An operation needs a key exactly when
it documents a 401 answer (every keyed router declares ``error_responses(401, ...)``; a test
holds the two together).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.auth import SECURITY_SCHEMES

#: Either scheme will do (an OpenAPI list of alternatives).
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]


def add_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the key schemes in ``schema`` and mark every operation that can answer 401."""
    schema.setdefault("components", {})["securitySchemes"] = dict(SECURITY_SCHEMES)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "401" in operation.get("responses", {}):
                operation["security"] = SECURITY
    return schema


def document_security(app: FastAPI) -> None:
    """Make ``app.openapi()`` return FastAPI's document with :func:`add_security` applied
    (FastAPI caches the document and rebuilds it when routes change; amending is idempotent)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return add_security(build())

    app.openapi = openapi  # type: ignore[method-assign]
