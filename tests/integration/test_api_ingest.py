"""POST /v1/events and /v1/segment/batch: per-event validation, tenants, broker failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.support import Api, click


async def test_valid_events_are_published_with_the_keys_tenant(api: Api) -> None:
    """Verify that valid events reach the producer, typed, under the key's tenant."""
    headers = await api.key("shop1", "ingest")
    response = await api.client.post("/v1/events", headers=headers, json={"events": [
        click("e1"), click("e2", tenant="shop1")]})
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "rejected": []}
    assert [(e.event_id, e.tenant) for e in api.producer.events] == [("e1", "shop1"),
                                                                      ("e2", "shop1")]


async def test_every_rejected_event_is_listed_with_index_field_and_reason(api: Api) -> None:
    """Verify that bad events are rejected one by one while the good ones go through."""
    headers = await api.key("shop1", "ingest")
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    purchase = {"event_id": "p1", "customer_id": "c1", "type": "purchase", "order_id": "o1",
                "currency": "EUR", "items": [{"product_id": "x", "quantity": 2,
                                              "unit_price": 5.0}],
                "total": 99.0, "occurred_at": "2026-03-01T10:00:00+00:00"}
    events = [click("ok"), click("t", tenant="shop2"), "nope", {**click("u"), "type": "refund"},
              click("f", occurred_at=future), purchase, click("n", occurred_at="2026-03-01")]
    response = await api.client.post("/v1/events", headers=headers, json={"events": events})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    by_index = {item["index"]: item for item in body["rejected"]}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6]
    assert (by_index[1]["code"], by_index[1]["field"]) == ("tenant_mismatch", "tenant")
    assert by_index[2]["code"] == "not_an_object"
    assert (by_index[3]["code"], by_index[3]["field"]) == ("unknown_type", "type")
    assert by_index[4]["code"] == "timestamp_in_future"
    assert (by_index[5]["code"], by_index[5]["field"]) == ("total_mismatch", "total")
    assert by_index[5]["event_id"] == "p1" and "99" in by_index[5]["reason"]
    assert by_index[6]["field"] == "occurred_at"
    assert [e.event_id for e in api.producer.events] == ["ok"]


async def test_a_body_that_is_not_a_batch_is_422_naming_the_field(api: Api) -> None:
    """Verify that a JSON body that is not a batch is a 422 invalid_body naming the field."""
    headers = await api.key("shop1", "ingest")
    no_events = await api.client.post("/v1/events", headers=headers, json={"evnts": []})
    too_many = await api.client.post("/v1/events", headers=headers,
                                     json={"events": [click(str(i)) for i in range(1001)]})
    for response in (no_events, too_many):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_body"
    assert no_events.json()["problems"][0]["field"] == "events"
    assert too_many.json()["problems"][0]["code"] == "too_long"
    assert api.producer.events == []


async def test_malformed_json_is_reported_as_such_with_line_and_column(api: Api) -> None:
    """Verify that a body that is not JSON is a 422 invalid_json whose message says the line
    and column of the mistake, with no field (not the character offset as a field)."""
    headers = {**await api.key("shop1", "ingest"), "Content-Type": "application/json"}
    response = await api.client.post("/v1/events", headers=headers,
                                     content=b'{"events": [\n  {"event_id": "e1",}\n]}')
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_json"
    assert "line 2, column 21" in body["message"]
    assert body["problems"] == [{"field": None, "code": "invalid_json",
                                 "message": body["message"]}]
    assert api.producer.events == []


async def test_every_problem_of_an_event_is_listed_with_its_field_and_code(api: Api) -> None:
    """Verify that an event with several mistakes is rejected with each of them listed (field
    path and code), the first also summing them up in field, code and reason."""
    headers = await api.key("shop1", "ingest")
    purchase = {"event_id": "p1", "customer_id": "c1", "type": "purchase", "order_id": "o1",
                "currency": "eur", "total": -1,
                "items": [{"product_id": "x", "quantity": 1, "unit_price": -2}, {"quantity": 1}],
                "occurred_at": "2026-03-01T10:00:00"}
    response = await api.client.post("/v1/events", headers=headers,
                                     json={"events": [click("ok"), purchase]})
    assert response.status_code == 202
    [rejected] = response.json()["rejected"]
    problems = [(problem["field"], problem["code"]) for problem in rejected["problems"]]
    assert problems == [("occurred_at", "timestamp_without_offset"),
                        ("items.0.unit_price", "negative_amount"),
                        ("items.1.product_id", "missing_field"),
                        ("items.1.unit_price", "missing_field"),
                        ("total", "negative_amount"),
                        ("currency", "invalid_field")]
    assert (rejected["field"], rejected["code"]) == problems[0]
    assert all(problem["message"] in rejected["reason"] for problem in rejected["problems"])


async def test_an_event_with_very_many_problems_lists_the_first_fifty(api: Api) -> None:
    """Verify that the problems listed for one event are capped, so a huge broken event
    cannot blow up the answer."""
    headers = await api.key("shop1", "ingest")
    broken = {"event_id": "p1", "customer_id": "c1", "type": "purchase", "order_id": "o1",
              "currency": "EUR", "total": 1.0, "items": [{"quantity": 1}] * 100,
              "occurred_at": "2026-03-01T10:00:00+00:00"}
    response = await api.client.post("/v1/events", headers=headers,
                                     json={"events": [click("ok"), broken]})
    [rejected] = response.json()["rejected"]
    assert len(rejected["problems"]) == 50
    assert rejected["problems"][-1]["field"] == "items.24.unit_price"


async def test_a_batch_with_no_event_accepted_is_422_listing_every_rejection(api: Api) -> None:
    """Verify that when every event is rejected the answer is 422 (not 202), publishes
    nothing, and lists every rejected event as a partly accepted batch would."""
    headers = await api.key("shop1", "ingest")
    events = [click("t", tenant="shop2"), "nope", {**click("u"), "type": "refund"}]
    response = await api.client.post("/v1/events", headers=headers, json={"events": events})
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["accepted"]) == ("no_event_accepted", 0)
    assert "3 rejected" in body["message"]
    assert [(item["index"], item["code"]) for item in body["rejected"]] == [
        (0, "tenant_mismatch"), (1, "not_an_object"), (2, "unknown_type")]
    assert all(item["problems"] for item in body["rejected"])
    assert api.producer.events == []


async def test_the_ingest_routes_document_both_answers(api: Api) -> None:
    """Verify that /openapi.json documents 202 as the accepted answer and 422 as either the
    list of rejections or an error, for both ingest routes."""
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/events", "/v1/segment/batch"):
        responses = paths[path]["post"]["responses"]
        assert responses["202"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/IngestResult"}
        assert "At least one event was accepted" in responses["202"]["description"]
        schemas = responses["422"]["content"]["application/json"]["schema"]["anyOf"]
        assert {"$ref": "#/components/schemas/IngestRejected"} in schemas
        assert {"$ref": "#/components/schemas/ApiError"} in schemas
        assert "No event was accepted" in responses["422"]["description"]


async def test_a_broker_failure_is_503_and_the_next_batch_succeeds(api: Api) -> None:
    """Verify that an unconfirmed batch is a 503 to retry, and does not poison later ones."""
    headers = await api.key("shop1", "ingest")
    api.producer.fail = True
    failed = await api.client.post("/v1/events", headers=headers, json={"events": [click()]})
    assert failed.status_code == 503 and failed.json()["error"] == "unavailable"
    again = await api.client.post("/v1/events", headers=headers, json={"events": [click()]})
    assert again.status_code == 202


async def test_segment_batch_is_mapped_onto_our_events(api: Api) -> None:
    """Verify that Segment track/identify calls become clicks, purchases and a stitch."""
    headers = await api.key("shop1", "ingest")
    ts = "2026-03-01T10:00:00.000Z"
    batch = [
        {"type": "track", "event": "Product Viewed", "anonymousId": "a1", "messageId": "m1",
         "timestamp": ts, "properties": {"product_id": "p1", "category": "books"}},
        {"type": "track", "event": "Product Added", "anonymousId": "a1", "messageId": "m2",
         "timestamp": ts, "properties": {"product_id": "p1"}},
        {"type": "track", "event": "Products Searched", "userId": "u1", "messageId": "m3",
         "timestamp": ts, "properties": {"query": "tea"}},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m4",
         "timestamp": ts, "traits": {"email": "x@example.com"}},
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m5",
         "timestamp": ts, "properties": {"order_id": "o1", "total": 27.5, "currency": "eur",
                                         "products": [{"product_id": "p1", "price": 12.5,
                                                       "quantity": 2, "category": "books"}]}},
        {"type": "track", "event": "Coupon Applied", "userId": "u1", "messageId": "m6",
         "timestamp": ts},
        {"type": "alias", "userId": "u1", "messageId": "m7", "timestamp": ts},
        {"type": "track", "event": "Checkout Started", "userId": "u1", "messageId": "m8"},
    ]
    response = await api.client.post("/v1/segment/batch", headers=headers,
                                     json={"batch": batch, "sentAt": None})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 5
    rejected = {item["index"]: item for item in body["rejected"]}
    assert (rejected[5]["code"], rejected[5]["field"]) == ("unknown_event", "event")
    assert "Coupon Applied" in rejected[5]["reason"]
    assert rejected[6]["field"] == "type" and rejected[7]["field"] == "timestamp"
    events = {e.event_id: e for e in api.producer.events}
    assert (events["m1"].kind, events["m1"].anonymous_id, events["m1"].customer_id) == (
        "product_view", "a1", None)
    assert events["m2"].kind == "add_to_cart" and events["m3"].query == "tea"
    assert (events["m4"].customer_id, events["m4"].anonymous_id) == ("u1", "a1")
    purchase = events["m5"]
    assert (purchase.type, purchase.total, purchase.currency) == ("purchase", 25.0, "EUR")
    assert all(e.tenant == "shop1" for e in events.values())


async def test_a_segment_batch_with_no_call_accepted_is_422(api: Api) -> None:
    """Verify that the Segment route answers 422 too when none of its calls is accepted,
    listing each with its problems."""
    headers = await api.key("shop1", "ingest")
    batch = [{"type": "alias", "userId": "u1", "messageId": "m1",
              "timestamp": "2026-03-01T10:00:00Z"},
             {"type": "track", "event": "Product Viewed", "messageId": "m2",
              "timestamp": "2026-03-01T10:00:00Z"}]
    response = await api.client.post("/v1/segment/batch", headers=headers,
                                     json={"batch": batch})
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["accepted"]) == ("no_event_accepted", 0)
    assert [(item["index"], item["event_id"], item["code"]) for item in body["rejected"]] == [
        (0, "m1", "unknown_event"), (1, "m2", "missing_field")]
    assert body["rejected"][1]["problems"][0]["field"] == "customer_id"
    assert api.producer.events == []
