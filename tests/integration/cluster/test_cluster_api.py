"""The API reads from the Redis Cluster what a worker wrote there: profiles, the at-risk
ranking and recommendations, through ``crm api``'s cluster client."""

from __future__ import annotations

from collections.abc import Callable

from stream.processes import ManagedProcess
from stream.settings import Settings
from tests.helpers import wait_for
from tests.integration.cluster.support import Replay
from tests.integration.support import ApiServer
from tests.reference_features import assert_same_features, reference_profiles


def test_the_api_serves_profiles_rankings_and_recommendations_from_the_cluster(
    settings: Settings, start_worker: Callable[..., ManagedProcess], api_server: ApiServer
) -> None:
    """Verify that after a worker replayed a shop into the cluster, the API answers a
    customer's features exactly, the customers most at risk with their explanations, and a
    customer's recommendations."""
    replay = Replay.build(settings, events=20_000, customers=300, days=120, seed=3)
    # About 45 days of the shop: a horizon of 14 days resolves enough churn labels in them.
    worker = start_worker(churn_min_examples=20, churn_horizon_days=14)
    replay.send()
    replay.wait_until_caught_up(alive=[worker])
    expected = reference_profiles(replay.valid)
    customers = sorted(c for c in expected if not c.startswith("anon:"))
    with api_server.client() as client:
        for customer in customers[:50]:
            answer = client.get(f"/v1/customers/{customer}")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            # Scores come from the cluster too (a customer the worker scored has a segment).
            assert body["scores"]["segment"] is not None, body
            assert_same_features(_features(body["features"]), expected[customer], customer)

        def at_risk() -> list[dict[str, object]]:
            answer = client.get("/v1/customers/at-risk", params={"limit": 5})
            assert answer.status_code == 200, answer.text
            return list(answer.json()["customers"])

        ranked = wait_for(at_risk, timeout=60, what="a ranking of customers at risk",
                          alive=[worker])
        probabilities = [row["churn_probability"] for row in ranked]
        assert probabilities == sorted(probabilities, reverse=True), ranked
        assert all(row["churn_explanation"] for row in ranked), ranked

        def listed() -> list[dict[str, object]] | None:
            for customer in customers[:50]:
                answer = client.get(f"/v1/customers/{customer}/recommendations",
                                    params={"n": 5})
                assert answer.status_code == 200, answer.text
                if answer.json()["recommendations"]:
                    return list(answer.json()["recommendations"])
            return None

        recommendations = wait_for(listed, timeout=60, what="a customer's recommendations",
                                   alive=[worker])
        assert all(item["product_id"] for item in recommendations)

        def published_segments() -> list[dict[str, object]]:
            answer = client.get("/v1/segments")  # published on the telemetry interval
            assert answer.status_code == 200, answer.text
            return list(answer.json()["segments"])

        wait_for(published_segments, timeout=60, what="the segments", alive=[worker])


def _features(body: dict[str, object]) -> dict[str, object]:
    """The API's JSON features as :func:`assert_same_features` compares them."""
    from datetime import datetime

    features = dict(body)
    for name in ("first_seen_at", "last_seen_at", "last_order_at"):
        value = features.get(name)
        features[name] = datetime.fromisoformat(str(value)) if value else None
    return features
