"""Swagger UI at ``/docs`` from the app's own files, so the docs load without internet.

FastAPI's built-in page fetches Swagger UI from a CDN; the app turns that page (and ReDoc,
which would do the same) off and serves this one. The files under ``static/swagger-ui/``
are ``swagger-ui-dist`` from the npm registry as shipped (Swagger UI 5, which reads the
OpenAPI 3.1 document FastAPI writes), with its LICENSE and NOTICE.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI = "/static/swagger-ui"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    # Behind a proxy that mounts the API under a prefix, every URL carries that prefix.
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
        # No badge asking the public validator about our document.
        swagger_ui_parameters={"validatorUrl": None})
