"""Read routes against a real redis-server: profiles, rankings, alerts, models, erasure."""

from __future__ import annotations

import orjson

from api.auth import RateCount
from api.profiles import read_profile
from feature_store.keys import (
    METRICS_KEY,
    MODELS_HISTORY_KEY,
    MODELS_KEY,
    THROUGHPUT_KEY,
    CustomerKeys,
    erasure_receipt_key,
    ranking_key,
    segments_key,
)
from feature_store.reads import ProfileReader
from schemas.records import ErasureRequest
from tests.integration.support import Api, FakeProducer, add_alert, put_profile

EXPLANATION = orjson.dumps([{"feature": "days_since_last_order", "value": 40,
                             "contribution": 0.8}])


async def test_customer_profile_with_scores_and_explanation(api: Api) -> None:
    """Verify that GET /v1/customers/{id} returns features, scores, explanation, versions."""
    await put_profile(api.redis, "shop1", "c1", churn_probability=0.81, segment=2,
                      segment_label="bargain hunters", churn_explanation=EXPLANATION,
                      model_version="churn-v3")
    body = (await api.client.get("/v1/customers/c1", headers=await api.key())).json()
    assert body["features"]["orders"] == 1 and body["features"]["revenue"] == 25.0
    assert body["scores"]["churn_probability"] == 0.81
    assert body["scores"]["segment_label"] == "bargain hunters"
    assert body["churn_explanation"][0]["feature"] == "days_since_last_order"
    assert body["model_version"] == "churn-v3"
    assert body["updated_at"].startswith("2026-03-01T10:00:00")


async def test_scores_are_null_before_the_models_land(api: Api) -> None:
    """Verify that a customer with features only has null scores and an empty explanation."""
    await put_profile(api.redis, "shop1", "c2")
    headers = await api.key()
    body = (await api.client.get("/v1/customers/c2", headers=headers)).json()
    assert body["scores"]["churn_probability"] is None and body["churn_explanation"] == []
    recos = await api.client.get("/v1/customers/c2/recommendations", headers=headers)
    assert recos.json() == {"customer_id": "c2", "recommendations": []}
    assert (await api.client.get("/v1/customers/nobody", headers=headers)).status_code == 404


async def test_recommendations_are_cut_to_n(api: Api) -> None:
    """Verify that ?n= limits the cached recommendation list."""
    await put_profile(api.redis, "shop1", "c1")
    recos = [{"product_id": f"p{i}", "score": 1 - i / 10, "source": "collaborative"}
             for i in range(5)]
    await api.redis.set(CustomerKeys("shop1", "c1").recos, orjson.dumps(recos))
    response = await api.client.get("/v1/customers/c1/recommendations?n=2",
                                    headers=await api.key())
    assert [r["product_id"] for r in response.json()["recommendations"]] == ["p0", "p1"]


async def test_at_risk_is_highest_churn_first_with_explanations(api: Api) -> None:
    """Verify that at-risk customers come ranked, explained, and limited."""
    for customer_id, probability in (("low", 0.1), ("high", 0.95), ("mid", 0.6)):
        await put_profile(api.redis, "shop1", customer_id, churn_probability=probability,
                          churn_explanation=EXPLANATION)
    response = await api.client.get("/v1/customers/at-risk?limit=2", headers=await api.key())
    customers = response.json()["customers"]
    assert [c["customer_id"] for c in customers] == ["high", "mid"]
    assert customers[0]["churn_probability"] == 0.95
    assert customers[0]["churn_explanation"][0]["contribution"] == 0.8


async def test_at_risk_returns_limit_rows_past_a_ranked_customer_without_a_profile(
        api: Api) -> None:
    """Verify that a ranking member whose profile is gone (erased while a score was being
    written) is passed over and the next customer taken: limit rows whenever as many
    customers are ranked."""
    for customer_id, probability in (("a", 0.9), ("b", 0.8), ("c", 0.7)):
        await put_profile(api.redis, "shop1", customer_id, churn_probability=probability)
    await api.redis.zadd(ranking_key("shop1", "churn"), {"gone": 0.99, "also-gone": 0.95})
    response = await api.client.get("/v1/customers/at-risk?limit=3", headers=await api.key())
    assert [c["customer_id"] for c in response.json()["customers"]] == ["a", "b", "c"]


async def test_a_customer_is_served_the_label_their_segment_has_now(api: Api) -> None:
    """Verify that a profile and the at-risk list serve the label the customer's segment
    has in /v1/segments now, not the one it had when the customer was scored; a customer
    whose segment a refit ended has none until their next score; a customer another
    worker's segmenter placed keeps that one's words."""
    headers = await api.key()
    await put_profile(api.redis, "shop1", "kept", churn_probability=0.9, segment=2,
                      segment_label="regular buyers", segmenter="w1")
    await put_profile(api.redis, "shop1", "ended", churn_probability=0.8, segment=4,
                      segment_label="rare buyers", segmenter="w1")
    await put_profile(api.redis, "shop1", "theirs", churn_probability=0.7, segment=2,
                      segment_label="big spenders, rare", segmenter="w2")

    async def served(customer_id: str) -> tuple[int | None, str | None]:
        scores = (await api.client.get(f"/v1/customers/{customer_id}",
                                       headers=headers)).json()["scores"]
        return scores["segment"], scores["segment_label"]

    assert await served("kept") == (2, "regular buyers"), "nothing published yet"
    await api.redis.hset(segments_key("shop1"), mapping={
        "2": orjson.dumps({"segment": 2, "label": "one-time buyers", "size": 9,
                           "centroid": {}, "segmenter": "w1"}),
        "5": orjson.dumps({"segment": 5, "label": "frequent buyers", "size": 3,
                           "centroid": {}, "segmenter": "w1"})})
    assert await served("kept") == (2, "one-time buyers")
    assert await served("ended") == (None, None)
    assert await served("theirs") == (2, "big spenders, rare")
    at_risk = (await api.client.get("/v1/customers/at-risk", headers=headers)).json()
    assert [(c["scores"]["segment"], c["scores"]["segment_label"])
            for c in at_risk["customers"]] == [(2, "one-time buyers"), (None, None),
                                               (2, "big spenders, rare")]
    listed = (await api.client.get("/v1/segments", headers=headers)).json()["segments"]
    assert [(s["segment"], s["label"]) for s in listed] == [(2, "one-time buyers"),
                                                            (5, "frequent buyers")]


async def test_segments_and_models_render_when_present(api: Api) -> None:
    """Verify that segments (per tenant) and model metrics come back as the workers wrote."""
    headers = await api.key()
    assert (await api.client.get("/v1/segments", headers=headers)).json() == {"segments": []}
    assert (await api.client.get("/v1/models", headers=headers)).json() == {"models": []}
    await api.redis.hset(segments_key("shop1"), mapping={
        "1": orjson.dumps({"segment": 1, "label": "loyal", "size": 40,
                           "centroid": {"orders": 5.0}}),
        "0": orjson.dumps({"segment": 0, "label": "new", "size": 12, "centroid": {}})})
    await api.redis.hset(segments_key("other"), "0", orjson.dumps(
        {"segment": 0, "label": "theirs", "size": 1, "centroid": {}}))
    await api.redis.hset(MODELS_KEY, "churn", orjson.dumps({
        "name": "churn", "version": "churn-v2", "example_count": 1200,
        "metrics": {"roc_auc": 0.83, "log_loss": 0.41}, "updated_at": "2026-03-01T10:00:00Z"}))
    segments = (await api.client.get("/v1/segments", headers=headers)).json()["segments"]
    assert [(s["segment"], s["label"], s["size"]) for s in segments] == [(0, "new", 12),
                                                                        (1, "loyal", 40)]
    models = (await api.client.get("/v1/models", headers=headers)).json()["models"]
    assert models[0]["version"] == "churn-v2" and models[0]["metrics"]["roc_auc"] == 0.83


async def test_alerts_are_filtered_by_tenant_kind_and_limit(api: Api) -> None:
    """Verify that GET /v1/alerts shows only the key's tenant, newest first, by kind."""
    for index in range(5):
        await add_alert(api.redis, "shop1", f"c{index}",
                        kind="churn_risk" if index % 2 else "high_value")
    await add_alert(api.redis, "shop2", "theirs")
    headers = await api.key()
    alerts = (await api.client.get("/v1/alerts", headers=headers)).json()["alerts"]
    assert [a["customer_id"] for a in alerts] == ["c4", "c3", "c2", "c1", "c0"]
    churn = (await api.client.get("/v1/alerts?kind=churn_risk&limit=1",
                                  headers=headers)).json()["alerts"]
    assert [a["customer_id"] for a in churn] == ["c3"]
    later = await api.client.get("/v1/alerts?since=2999-01-01T00:00:00Z", headers=headers)
    assert later.json() == {"alerts": []}
    bad = await api.client.get("/v1/alerts?kind=nonsense", headers=headers)
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "kind"


async def test_erasure_publishes_a_request_and_the_receipt_turns_done(api: Api) -> None:
    """Verify that DELETE publishes an ErasureRequest keyed by customer, and the receipt
    reads pending until the worker marks it done (only for the same tenant)."""
    headers = await api.key("shop1")
    response = await api.client.delete("/v1/customers/c1", headers=headers)
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["status_url"] == f"/v1/erasures/{receipt['receipt_id']}"
    [(topic, key, value)] = api.producer.raw
    request = ErasureRequest.model_validate_json(value)
    assert topic == api.settings.topic("crm.erasure") and key == "c1"
    assert (request.tenant, request.customer_id, request.receipt_id) == (
        "shop1", "c1", receipt["receipt_id"])
    status = await api.client.get(receipt["status_url"], headers=headers)
    assert status.json()["status"] == "pending"
    other = await api.client.get(receipt["status_url"], headers=await api.key("shop2"))
    assert other.status_code == 404
    await api.redis.hset(erasure_receipt_key(request.receipt_id),
                         mapping={"status": "done", "completed_at": "1772359300000"})
    done = (await api.client.get(receipt["status_url"], headers=headers)).json()
    assert done["status"] == "done" and done["completed_at"].startswith("2026-03-01")


async def test_metrics_include_pipeline_counters_without_the_topic_prefix(api: Api) -> None:
    """Verify that /metrics has the API's request metrics and the workers' Redis counters."""
    prefix = api.settings.topic_prefix
    await api.redis.hset(METRICS_KEY, mapping={f"{prefix}shop.clicks|applied": 7,
                                               f"{prefix}shop.clicks|dead_letter": 1})
    await api.redis.xadd(THROUGHPUT_KEY, {"at": 1772359200000, "events_per_s": 950.5,
                                          "lag": 12})
    await api.client.get("/v1/models", headers=await api.key())
    text = (await api.client.get("/metrics")).text
    assert 'crm_events_processed_total{topic="shop.clicks",outcome="applied"} 7' in text
    assert 'crm_events_processed_total{topic="shop.clicks",outcome="dead_letter"} 1' in text
    assert 'crm_api_requests_total{method="GET",route="/v1/models",status="200"} 1.0' in text
    assert "crm_pipeline_consumer_lag 12.0" in text


async def test_dashboard_summary_holds_everything_the_page_draws(api: Api) -> None:
    """Verify that /v1/dashboard gathers throughput, counters, segments, risk, alerts, models."""
    await put_profile(api.redis, "shop1", "c1", churn_probability=0.9,
                      churn_explanation=EXPLANATION)
    await add_alert(api.redis, "shop1", "c1")
    await api.redis.xadd(THROUGHPUT_KEY, {"at": 1772359200000, "events_per_s": 10, "lag": 0})
    await api.redis.xadd(MODELS_HISTORY_KEY, {"at": 1772359200000, "model": "churn",
                                              "metrics": orjson.dumps({"roc_auc": 0.7})})
    await api.redis.hset(METRICS_KEY, f"{api.settings.topic_prefix}shop.clicks|applied", 5)
    body = (await api.client.get("/v1/dashboard", headers=await api.key())).json()
    assert body["customers"] == 1 and body["processed_total"] == 5
    assert body["at_risk"][0]["customer_id"] == "c1" and len(body["alerts"]) == 1
    assert body["throughput"][0]["events_per_s"] == 10.0
    assert body["model_history"][0]["metrics"] == {"roc_auc": 0.7}


async def test_readyz_says_which_dependency_is_down(api: Api) -> None:
    """Verify that /readyz is 503 naming the broker when it cannot be reached."""
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"redis": "ok", "broker": "unreachable"}
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}


async def test_the_one_round_trip_profile_read_matches_the_feature_store(api: Api) -> None:
    """Verify that the hot route's read (counter + profile in one pipeline) decodes the same
    profile as feature_store's ProfileReader, categories and recent products included."""
    await put_profile(api.redis, "shop1", "c1", churn_probability=0.4, segment=1,
                      segment_label="loyal", churn_explanation=EXPLANATION, clv=120.5)
    keys = CustomerKeys("shop1", "c1")
    await api.redis.zadd(keys.key("categories"), {"shoes": 3.0, "hats": 1.0, "bags": 0.5})
    await api.redis.zadd(keys.key("recent"), {"p1": 1, "p2": 2})
    expected = await ProfileReader(redis=api.redis).profile("shop1", "c1")
    assert expected is not None
    assert [(c.category, c.weight) for c in expected.features.category_affinity] == [
        ("shoes", round(3 / 4.5, 4)), ("hats", round(1 / 4.5, 4)), ("bags", round(0.5 / 4.5, 4))]
    assert expected.features.recent_products == ["p2", "p1"]
    assert expected.scores.clv == 120.5 and expected.scores.segment_label == "loyal"
    assert await read_profile(api.redis, "shop1", "c1", None) == expected
    pending = RateCount("crm:ratelimit:{t}:1", limit=5, window=1, window_s=1, now=1.0)
    assert await read_profile(api.redis, "shop1", "c1", pending) == expected
    assert await read_profile(api.redis, "shop1", "nobody", pending) is None
    assert await api.redis.get("crm:ratelimit:{t}:1") == b"2"  # both counted
    assert 0 < await api.redis.ttl("crm:ratelimit:{t}:1") <= 2
    body = (await api.client.get("/v1/customers/c1", headers=await api.key())).json()
    assert body == orjson.loads(expected.model_dump_json())


async def test_an_exhausted_redis_pool_answers_503_with_retry_after(api: Api) -> None:
    """Verify that when every pooled Redis connection stays busy past the pool's wait, a read
    is refused with 503 and Retry-After (overload, retry later), not a 500."""
    import asyncio

    import httpx

    from api.main import create_app
    from api.settings import ApiSettings

    headers = await api.key()
    app = create_app(api.settings, ApiSettings(api_redis_connections=1,
                                               api_redis_pool_timeout_s=0.2),
                     producer=FakeProducer())
    pooled = app.state.crm.redis
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        busy = asyncio.create_task(pooled.blpop(["never-filled"], timeout=2))
        await asyncio.sleep(0.1)  # the one connection is now held by the blocking pop
        response = await client.get("/v1/customers/c1", headers=headers)
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert response.json()["error"] == "unavailable"
        await busy
        assert (await client.get("/v1/customers/c1", headers=headers)).status_code == 404
    await pooled.aclose()


async def test_profile_reads_survive_redis_losing_its_scripts(api: Api) -> None:
    """Verify that after SCRIPT FLUSH (as after a Redis restart) the profile read loads its
    script again and answers, rather than failing with NOSCRIPT."""
    await put_profile(api.redis, "shop1", "c1", churn_probability=0.4)
    headers = await api.key()
    before = (await api.client.get("/v1/customers/c1", headers=headers)).json()
    await api.redis.script_flush()

    response = await api.client.get("/v1/customers/c1", headers=headers)

    assert response.status_code == 200 and response.json() == before
    assert await ProfileReader(redis=api.redis).profile("shop1", "c1") is not None
