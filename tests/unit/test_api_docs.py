"""/docs: Swagger UI served from the app's own files, so it works without internet."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.unit import test_api_support as support
from tests.unit.test_api_support import Api

api = support.api  # the shared fixture, under its own name here

_REFERENCES = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


async def test_the_docs_page_references_only_the_apps_own_assets(api: Api) -> None:
    """Verify that /docs names no external host and that every script, stylesheet, icon and
    the OpenAPI document it references answers 200 from the app itself."""
    page = await api.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = _REFERENCES.findall(page.text)
    assert {"/openapi.json", "/static/swagger-ui/swagger-ui-bundle.js",
            "/static/swagger-ui/swagger-ui.css"} <= set(references)
    assert [ref for ref in references if urlsplit(ref).netloc or ref.startswith("//")] == []
    for reference in references:
        asset = await api.client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference


async def test_swagger_ui_ships_with_its_license(api: Api) -> None:
    """Verify that the vendored Swagger UI is served with its license and notice."""
    license_text = await api.client.get("/static/swagger-ui/LICENSE")
    notice = await api.client.get("/static/swagger-ui/NOTICE")
    assert "Apache License" in license_text.text and "swagger-ui" in notice.text


async def test_redoc_is_not_served(api: Api) -> None:
    """Verify that /redoc, which would load its script from a CDN, is turned off."""
    assert (await api.client.get("/redoc")).status_code == 404
