"""/docs: Swagger UI served from the app's own files, so it works without internet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from api.main import create_app
from stream.settings import Settings


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process. The docs read nothing from Redis or Kafka, so both point at
    a closed port: a request that reached either would fail."""
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http
    await app.state.crm.redis.aclose()

_REFERENCES = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


async def test_the_docs_page_references_only_the_apps_own_assets(client: httpx.AsyncClient) -> None:
    """Verify that /docs names no external host and that every script, stylesheet, icon and
    the OpenAPI document it references answers 200 from the app itself."""
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = _REFERENCES.findall(page.text)
    assert {"/openapi.json", "/static/swagger-ui/swagger-ui-bundle.js",
            "/static/swagger-ui/swagger-ui.css"} <= set(references)
    assert [ref for ref in references if urlsplit(ref).netloc or ref.startswith("//")] == []
    for reference in references:
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference


async def test_swagger_ui_ships_with_its_license(client: httpx.AsyncClient) -> None:
    """Verify that the vendored Swagger UI is served with its license and notice."""
    license_text = await client.get("/static/swagger-ui/LICENSE")
    notice = await client.get("/static/swagger-ui/NOTICE")
    assert "Apache License" in license_text.text and "swagger-ui" in notice.text


async def test_redoc_is_not_served(client: httpx.AsyncClient) -> None:
    """Verify that /redoc, which would load its script from a CDN, is turned off."""
    assert (await client.get("/redoc")).status_code == 404
