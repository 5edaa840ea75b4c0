"""JSON answers serialised with orjson (datetimes as RFC 3339, fast)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    """The app's default response class.

    FastAPI ships its own, deprecated since it serialises models via pydantic; this one keeps
    orjson for everything the routes return (models are dumped in JSON mode first).
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
