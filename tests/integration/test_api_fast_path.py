"""The profile read's fast path (api.fast_path) answers exactly what the routed endpoint does.

Two apps share one redis-server: the usual one, and one with the fast path turned off, so every
request goes through FastAPI's routing, dependencies and exception middleware.
"""

from __future__ import annotations

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.main import create_app
from api.settings import ApiSettings
from tests.integration.support import Api, FakeProducer, put_profile


def _routed_client(api: Api) -> httpx.AsyncClient:
    routed = create_app(api.settings, ApiSettings(api_rate_limit=1000), redis=api.redis,
                        producer=FakeProducer(), profile_fast_path=False)
    transport = httpx.ASGITransport(app=routed, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://api")


def _answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    return response.status_code, dict(response.headers), response.content


async def test_every_answer_is_the_routed_endpoints(api: Api) -> None:
    """Verify that 200, 401, 403, 404, 422 and unusual paths answer byte for byte alike."""
    await put_profile(api.redis, "shop1", "c1", churn_probability=0.4, segment=1,
                      segment_label="new", model_version="churn-v1")
    await put_profile(api.redis, "shop2", "theirs")
    reader, writer = await api.key(scopes="read"), await api.key(scopes="ingest")
    requests = [
        ("/v1/customers/c1", reader),
        ("/v1/customers/c1?unused=1", reader),
        ("/v1/customers/nobody", reader),
        ("/v1/customers/theirs", reader),  # another tenant's customer: 404
        ("/v1/customers/c1", writer),  # no read scope: 403
        ("/v1/customers/c1", {}),  # no key: 401
        ("/v1/customers/c1", {"Authorization": "Bearer crm_unknown"}),
        ("/v1/customers/" + "x" * 201, reader),  # too long: 422, from FastAPI
        ("/v1/customers/c%2F1", reader),
        ("/v1/customers/at-risk", reader),
        ("/v1/customers/c1/", reader),
    ]
    statuses = []
    async with _routed_client(api) as routed:
        for path, headers in requests:
            fast = await api.client.get(path, headers=headers)
            slow = await routed.get(path, headers=headers)
            assert _answer(fast) == _answer(slow), path
            statuses.append(fast.status_code)
    assert statuses[:8] == [200, 200, 404, 404, 403, 401, 401, 422]


async def test_rate_limited_and_redis_down_answer_alike(api: Api) -> None:
    """Verify that 429 (with Retry-After) and 503 (Redis unreachable) match the routed ones."""
    await put_profile(api.redis, "shop1", "c1")
    async with _routed_client(api) as routed:
        for client in (api.client, routed):
            headers = await api.key(rate_limit=1)
            codes = [(await client.get("/v1/customers/c1", headers=headers)).status_code
                     for _ in range(3)]
            assert 429 in codes and codes[0] in (200, 429)
            limited = await client.get("/v1/customers/c1", headers=headers)
            assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
            assert "retry-after" in limited.headers

        headers = await api.key()
        answers = []
        for client in (api.client, routed):
            with pytest.MonkeyPatch.context() as patch:
                async def unreachable(*_: object, **__: object) -> None:
                    raise RedisConnectionError("connection refused")
                patch.setattr("api.profiles.execute_reads", unreachable)
                answers.append(_answer(await client.get("/v1/customers/c1", headers=headers)))
    assert answers[0] == answers[1] and answers[0][0] == 503


async def test_requests_are_counted_under_the_route_template(api: Api) -> None:
    """Verify that /metrics labels fast-path answers with the route, not the raw path."""
    await put_profile(api.redis, "shop1", "c1")
    headers = await api.key()
    await api.client.get("/v1/customers/c1", headers=headers)
    await api.client.get("/v1/customers/nobody", headers=headers)
    metrics = (await api.client.get("/metrics")).text
    assert ('crm_api_requests_total{method="GET",route="/v1/customers/{customer_id}",'
            'status="200"} 1.0') in metrics
    assert 'route="/v1/customers/{customer_id}",status="404"} 1.0' in metrics
    assert "/v1/customers/c1" not in metrics


async def test_plain_reads_never_reach_the_router(api: Api,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that the fast path, not the routed endpoint, answers a plain profile read."""
    async def routed_endpoint_called(*_: object) -> None:
        raise AssertionError("routed")
    monkeypatch.setattr("api.routes.customers.profile_response", routed_endpoint_called)
    await put_profile(api.redis, "shop1", "c1")
    headers = await api.key()
    assert (await api.client.get("/v1/customers/c1", headers=headers)).status_code == 200
    long_id = "/v1/customers/" + "x" * 201  # left to the router, which refuses it itself
    assert (await api.client.get(long_id, headers=headers)).status_code == 422
