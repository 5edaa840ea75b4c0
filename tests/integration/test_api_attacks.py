"""Attacks on the API, swept over every route that needs a key: missing, wrong and revoked
keys (401), a key without the scope (403), another tenant's ids (404), oversize bodies
(413), path tricks (404/422), a spent rate limit (429). Never a 5xx, never a trace.

``tests/integration/test_api_auth.py`` tests each mechanism on one route; this sweep checks
that no route was left out of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from api.keys import create_key, revoke_key
from tests.integration.support import Api, put_profile

#: Every route that needs a key, with the scope it needs (the test below checks that the
#: OpenAPI document lists no other).
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/v1/customers/at-risk", "read"),
    ("GET", "/v1/customers/{customer_id}", "read"),
    ("DELETE", "/v1/customers/{customer_id}", "admin"),
    ("GET", "/v1/customers/{customer_id}/recommendations", "read"),
    ("GET", "/v1/customers/{customer_id}/tickets", "read"),
    ("GET", "/v1/tickets/{ticket_id}", "read"),
    ("GET", "/v1/forecast", "read"),
    ("GET", "/v1/erasures/{receipt_id}", "read"),
    ("POST", "/v1/events", "ingest"),
    ("POST", "/v1/segment/batch", "ingest"),
    ("GET", "/v1/alerts", "read"),
    ("GET", "/v1/alerts/stream", "read"),
    ("GET", "/v1/segments", "read"),
    ("GET", "/v1/models", "read"),
    ("GET", "/v1/dashboard", "read"),
]
BODIES: dict[str, Any] = {"/v1/events": {"events": []}, "/v1/segment/batch": {"batch": []}}


STREAM = "/v1/alerts/stream"


async def call(api: Api, method: str, path: str, headers: dict[str, str],
               **kwargs: Any) -> httpx.Response:
    """One request. The in-process transport hands over an answer only once the app is done,
    and the alert stream never is: a stream still open after a second was accepted (200)."""
    url = path.format(customer_id="c1", receipt_id="er_x", ticket_id="t1")
    if "json" not in kwargs and "content" not in kwargs and path in BODIES:
        kwargs["json"] = BODIES[path]
    request = api.client.request(method, url, headers=headers, **kwargs)
    if path != STREAM:
        return await request
    try:
        return await asyncio.wait_for(request, 1.0)
    except TimeoutError:
        return httpx.Response(200, json={"streaming": True},
                              request=httpx.Request(method, url))


def clean(response: httpx.Response, *statuses: int) -> None:
    """The answer is one of ``statuses``, JSON with an error code, and carries no trace."""
    assert response.status_code in statuses, (response.request.url, response.status_code,
                                              response.text[:300])
    assert "Traceback" not in response.text and 'File "' not in response.text
    if response.status_code >= 400:
        assert response.json()["error"], response.text


async def test_the_sweep_knows_every_keyed_route(api: Api) -> None:
    """Verify that ROUTES lists exactly the operations the OpenAPI document says need a key."""
    documented = {(method.upper(), path)
                  for path, operations in api.app.openapi()["paths"].items()
                  for method, operation in operations.items() if operation.get("security")}
    assert documented == {(method, path) for method, path, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
async def test_every_route_refuses_missing_wrong_and_revoked_keys(
        api: Api, method: str, path: str, scope: str) -> None:
    """Verify 401 without a key, with a made-up one, with a revoked one, and with a key
    smuggled in odd ways (empty bearer, a key with a line break)."""
    api.app.state.crm.key_cache.ttl_s = 0
    revoked = await create_key(api.redis, "shop1", "read,ingest,admin", "revoked")
    await revoke_key(api.redis, revoked)
    for headers in ({}, {"Authorization": "Bearer crm_made_up"},
                    {"Authorization": f"Bearer {revoked}"}, {"X-API-Key": revoked},
                    {"Authorization": "Bearer "}, {"Authorization": "Basic !!!"},
                    {"X-API-Key": "crm_x\x7f"}, {"Authorization": "Bearer " + "k" * 10_000}):
        clean(await call(api, method, path, headers), 401)


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
async def test_every_route_refuses_a_key_without_its_scope(
        api: Api, method: str, path: str, scope: str) -> None:
    """Verify 403 for each key that lacks the route's scope (a read key cannot ingest or
    erase, an ingest key cannot read); a key cannot name another tenant to escape its own."""
    for scopes in ("read", "ingest", "admin"):
        if scopes != scope:
            clean(await call(api, method, path, await api.key(scopes=scopes)), 403)
    headers = await api.key(scopes=scope)
    clean(await call(api, method, path, {**headers, "X-Tenant": "shopA"}), 200, 202, 404, 422)


async def test_another_tenants_ids_are_404(api: Api) -> None:
    """Verify that tenant B sees none of tenant A's customer, recommendations or erasure
    receipts (404, as for ids that do not exist), and cannot ingest for tenant A (422)."""
    await put_profile(api.redis, "shopA", "c1", churn_probability=0.9)
    key_a, key_b = await api.key("shopA"), await api.key("shopB")
    erased = (await api.client.delete("/v1/customers/c2", headers=key_a)).json()
    receipt = erased.get("receipt_id") or erased.get("receipt")
    assert receipt, erased
    assert (await api.client.get(f"/v1/erasures/{receipt}", headers=key_a)).status_code == 200
    for path in ("/v1/customers/c1", "/v1/customers/c1/recommendations",
                 "/v1/customers/c1/tickets", f"/v1/erasures/{receipt}"):
        clean(await api.client.get(path, headers=key_b), 404)
    clean(await api.client.post("/v1/events", headers=key_b, json={"events": [{
        "event_id": "e1", "customer_id": "c1", "tenant": "shopA", "type": "click",
        "kind": "product_view", "product_id": "p1",
        "occurred_at": "2026-03-01T10:00:00+00:00"}]}), 422)


@pytest.mark.parametrize("path", [
    "/v1/customers/..%2F..%2Fetc%2Fpasswd", "/v1/customers/../../etc/passwd",
    "/v1/customers/%2e%2e/%2e%2e/etc/passwd", "/v1/customers/c1%00.json",
    "/v1/customers/%0d%0aSet-Cookie:x=1", "/v1/customers/" + "a" * 5_000,
    "/v1/customers/*", "/v1/customers/%ff%fe", "/v1/erasures/..%2F..%2Fsecret",
    "/v1/erasures/" + "%00" * 10, "/v1/%2e%2e/metrics", "/v1/customers/c1%2f..%2f..%2fmodels",
    "/static/../../pyproject.toml", "/static/..%2f..%2fpyproject.toml", "/v1/%2e%2e/keys",
])
async def test_path_tricks_are_404_or_422(api: Api, path: str) -> None:
    """Verify that ids and paths that try to walk out of their place find nothing."""
    response = await api.client.get(path, headers=await api.key())
    clean(response, 404, 422)
    assert "[tool." not in response.text  # no file of the source tree served


@pytest.mark.parametrize("path", ["/v1/events", "/v1/segment/batch"])
async def test_oversize_bodies_are_413(api: Api, path: str) -> None:
    """Verify 413 for a body over the limit, declared or streamed, on each write route."""
    headers = {**await api.key(), "Content-Type": "application/json"}
    clean(await api.client.post(path, content=b"[" + b"1," * 6_000_000 + b"1]",
                                headers=headers), 413)


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
async def test_every_route_answers_429_once_the_limit_is_spent(
        api: Api, method: str, path: str, scope: str) -> None:
    """Verify that every keyed route counts against the key's limit and answers 429 with
    Retry-After once it is spent (a few tries: a new one-second window may begin)."""
    headers = await api.key(rate_limit=2)
    for _ in range(4):  # at once: the alert stream answers only after a second
        answers = await asyncio.gather(*(call(api, method, path, headers) for _ in range(5)))
        limited = [answer for answer in answers if answer.status_code == 429]
        if limited:
            break
    assert limited, [answer.status_code for answer in answers]
    for answer in answers:
        clean(answer, 200, 202, 404, 422, 429)
    assert int(limited[0].headers["retry-after"]) >= 1
