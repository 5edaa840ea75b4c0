"""413 for a request body larger than ``CRM_API_MAX_BODY_BYTES``, before it fills memory.

FastAPI reads a whole body before it parses it, and uvicorn sets no bound: one request could
hold gigabytes in an API process. A body whose ``Content-Length`` is over the limit is
refused before a byte of it is read; one sent without a length (chunked) is refused as soon
as what was read passes the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiProblem, error_response
from schemas.api import ApiError


def _too_large(max_bytes: int) -> ApiProblem:
    return ApiProblem(413, "payload_too_large",
                      f"the body is larger than {max_bytes} bytes; send fewer events per "
                      "request")


def _declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` header (the server refuses one that is not a number)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class BodyLimit:
    """Pure ASGI middleware; ``max_bytes`` 0 lets any size through."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_bytes:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            problem = _too_large(self.max_bytes)
            response = error_response(413, ApiError(error=problem.code,
                                                    message=str(problem.detail)))
            await response(scope, receive, send)
            return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_bytes:  # answered 413 by the app's error handlers
                raise _too_large(self.max_bytes)
            return message

        await self.app(scope, counted, send)
