"""``GET /v1/customers/{id}`` answered before FastAPI routes the request.

Why: it is the request shops and support tools make most, and under FastAPI a good share of
its CPU went to finding the route (seven route checks), solving its dependencies and running
FastAPI's inner middlewares, none of which this request needs. Measured on the ASGI app called
in-process against a real Redis (alternated pairs): 600 → 440 µs of CPU per request; under
uvicorn, about 0.95 → 0.8 ms per request with the server's own share.

Only the plain case is taken here: ``GET``, no root path, one path segment within the route's
length bound that is not another route's (``at-risk``). Everything else, ids FastAPI must refuse
with 422 among them, goes on to the routed endpoint, which answers through the same
:func:`api.profiles.profile_response`; a test holds the two to identical answers. The
middleware sits inside the metrics middleware and labels requests with the route's template.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import handled_error_response
from api.profiles import MAX_CUSTOMER_ID, PROFILE_ROUTE, profile_response
from api.routes.customers import customer

_PREFIX = PROFILE_ROUTE.removesuffix("{customer_id}")
#: What ``scope["route"]`` holds for requests answered here, as routing would have set it
#: (the metrics middleware labels requests with its template).
_ROUTE = Route(PROFILE_ROUTE, customer, methods=["GET"])
#: Fixed paths under the prefix that belong to other routes.
_OTHER_ROUTES = frozenset({"at-risk"})


def plain_customer_id(scope: Scope) -> str | None:
    """The customer id when ``scope`` is a plain profile read, else ``None``.

    >>> scope = {"type": "http", "method": "GET", "root_path": "", "path": "/v1/customers/c1"}
    >>> plain_customer_id(scope), plain_customer_id({**scope, "path": "/v1/customers/at-risk"})
    ('c1', None)
    """
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(_PREFIX):
        return None
    customer_id = path[len(_PREFIX):]
    if (not customer_id or len(customer_id) > MAX_CUSTOMER_ID or "/" in customer_id
            or customer_id in _OTHER_ROUTES):
        return None
    return customer_id


class ProfileFastPath:
    """Pure ASGI middleware; ``enabled=False`` routes every request (tests compare the two)."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        customer_id = plain_customer_id(scope) if self.enabled else None
        if customer_id is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        scope["path_params"] = {"customer_id": customer_id}
        request = Request(scope, receive)
        try:
            response = await profile_response(request, customer_id)
        except Exception as exc:
            handled = await handled_error_response(request, exc)
            if handled is None:
                raise
            response = handled
        await response(scope, receive, send)
