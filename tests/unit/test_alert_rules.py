"""The alert rules, pure: thresholds, K consecutive, hysteresis, cooldown, consent, carts."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import pytest

from agents import alert_config, alert_reasons, alert_rules
from agents.alert_config import AlertConfig
from agents.alert_rules import (
    CustomerAlertState,
    CustomerUpdate,
    Decision,
    Outcome,
    evaluate_update,
    fire_cart,
)
from feature_store import rule_state as alert_state
from schemas.records import AlertKind, Contribution, alert_id_for
from tests.unit.support import MINUTE_MS, at, click, ms, purchase, ticket, update

NOW = datetime(2026, 6, 1, tzinfo=UTC)  # the wall clock: must never matter
DAY = 24 * 60


def run(updates: list[CustomerUpdate], state: CustomerAlertState | None = None,
        config: AlertConfig | None = None) -> list[list[Decision]]:
    state = state if state is not None else CustomerAlertState()
    return [evaluate_update(u, state, config or AlertConfig(), now=NOW) for u in updates]


def emitted(per_update: list[list[Decision]], kind: AlertKind | None = None) -> list[int]:
    """Indexes of the updates that emitted an alert (of ``kind``)."""
    return [i for i, decisions in enumerate(per_update) for d in decisions
            if d.outcome is Outcome.EMIT and (kind is None or d.alert.kind is kind)]


def churn_updates(probabilities: list[float], customer: str = "c1", start: float = 0,
                  step: float = 60) -> list[CustomerUpdate]:
    return [update(click(f"{customer}-e{start + i}", customer, start + i * step),
                   churn_probability=p,
                   churn_explanation=[{"feature": "order_recency_days", "value": 41.2,
                                       "contribution": 1.3},
                                      {"feature": "open_tickets", "value": 2.0,
                                       "contribution": 0.4},
                                      {"feature": "log_orders", "value": 1.6,
                                       "contribution": -0.5}])
            for i, p in enumerate(probabilities)]


def test_module_doctests_pass() -> None:
    """Verify that the examples in the alert modules' docstrings run."""
    for module in (alert_rules, alert_config, alert_reasons, alert_state):
        assert doctest.testmod(module).failed == 0, module.__name__


# -- churn_risk ------------------------------------------------------------------------------


def test_churn_fires_after_k_consecutive_updates_above_the_threshold() -> None:
    """Verify that churn_risk needs K updates in a row at or above the threshold."""
    decisions = run(churn_updates([0.5, 0.75, 0.8, 0.65, 0.71, 0.9, 0.95]))
    assert emitted(decisions) == [6]  # 0.75, 0.8 then a dip; 0.71, 0.9, 0.95 are three
    alert = decisions[6][0].alert
    assert (alert.kind, alert.score, alert.threshold) == (AlertKind.CHURN_RISK, 0.95, 0.7)
    assert alert.reason == ("Churn risk 0.95 (threshold 0.70) for 3 consecutive updates: "
                            "no order for 41 days, 2 open tickets")
    assert [c.feature for c in alert.explanation] == ["order_recency_days", "log_orders",
                                                      "open_tickets"]
    assert alert.explanation[1].contribution == -0.5, "contributions keep their sign"
    assert alert.model_version == "churn-7"


def test_churn_rearms_only_below_threshold_minus_hysteresis() -> None:
    """Verify that a customer hovering around the threshold alerts once, not on each crossing."""
    hovering = [0.8, 0.8, 0.8, 0.65, 0.8, 0.8, 0.8, 0.61, 0.9, 0.9, 0.9]
    config = AlertConfig.model_validate({"churn_risk": {"cooldown": 0}})
    assert emitted(run(churn_updates(hovering), config=config)) == [2]
    rearmed = [0.8, 0.8, 0.8, 0.55, 0.8, 0.8, 0.8]
    assert emitted(run(churn_updates(rearmed), config=config)) == [2, 6]


def test_a_redelivered_update_neither_counts_twice_nor_alerts_twice() -> None:
    """Verify that re-evaluating a seen trigger repeats its alert and leaves the streak alone."""
    updates = churn_updates([0.8, 0.8, 0.8])
    state = CustomerAlertState()
    run(updates[:2], state)
    again = run([updates[1]], state)  # a redelivery of the second update
    assert again == [[]] and state.churn_streak == 2
    [[fired]] = run([updates[2]], state)
    [[repeat]] = run([updates[2]], state)
    assert fired.outcome is Outcome.EMIT and repeat.outcome is Outcome.REPEAT
    assert repeat.alert == fired.alert


def test_alert_ids_are_deterministic_across_fresh_state() -> None:
    """Verify that the same story from scratch (a crash before state was saved) repeats ids."""
    first = run(churn_updates([0.8, 0.8, 0.8]))[2][0].alert
    second = run(churn_updates([0.8, 0.8, 0.8]))[2][0].alert
    assert first.alert_id == second.alert_id == alert_id_for(
        tenant="default", customer_id="c1", kind="churn_risk", triggered_by="c1-e2")


# -- cooldown --------------------------------------------------------------------------------


def test_cooldown_is_measured_in_event_time() -> None:
    """Verify that one alert per customer and kind per cooldown counts event time only."""
    config = AlertConfig.model_validate({"negative_ticket": {"cooldown": "6h"}})
    state = CustomerAlertState()
    stories = [ticket("t1", "c1", 0, "resolved", csat=1), ticket("t2", "c1", 5 * 60, "resolved",
               csat=1), ticket("t3", "c1", 6 * 60 + 1, "resolved", csat=1)]
    outcomes = [[d.outcome for d in ds] for ds in run([update(t) for t in stories], state, config)]
    assert outcomes == [[Outcome.EMIT], [Outcome.SUPPRESSED_COOLDOWN], [Outcome.EMIT]]
    late = ticket("t0", "c1", 6 * 60 - 2, "resolved", csat=1)  # out of order, near t3
    assert run([update(late)], state, config)[0][0].outcome is Outcome.SUPPRESSED_COOLDOWN


# -- high_value ------------------------------------------------------------------------------


def test_high_value_fires_when_clv_enters_the_top_percentile() -> None:
    """Verify that high_value fires on entering the top, once, and re-arms below the band."""
    config = AlertConfig.model_validate({"high_value": {"cooldown": 0}})
    percentiles = [0.5, 0.98, 0.992, 0.999, 0.975, 0.995, 0.96, 0.991]
    updates = [update(purchase(f"p{i}", "c1", i * 60), clv=1000.0 + i, clv_percentile=p,
                      features={"orders": 12, "revenue": 2400.5})
               for i, p in enumerate(percentiles)]
    decisions = run(updates, config=config)
    assert emitted(decisions, AlertKind.HIGH_VALUE) == [2, 7]
    alert = decisions[2][0].alert
    assert alert.reason == ("Entered the top 1% of customers by lifetime value: CLV 1,002.00 "
                            "EUR, 99.2th percentile (threshold 99th), 12 orders, 2,400.50 EUR "
                            "spent")
    assert alert.explanation[0] == Contribution(feature="clv_percentile", value=0.992,
                                                contribution=0.002)


def test_reasons_tell_money_in_the_purchases_currency() -> None:
    """Verify that churn and high-value reasons triggered by a purchase give every amount in
    that purchase's currency, never a dollar sign."""
    drivers = [{"feature": "revenue", "value": 801.7, "contribution": 0.9},
               {"feature": "avg_order_value", "value": 267.23, "contribution": 0.5}]
    updates = [update(purchase(f"p{i}", "c1", i * 60, total=267.23), churn_probability=0.9,
                      churn_explanation=drivers) for i in range(3)]
    churn = run(updates)[2][0].alert
    assert churn.reason == ("Churn risk 0.90 (threshold 0.70) for 3 consecutive updates: "
                            "801.70 EUR spent, average order 267.23 EUR")
    [[high]] = run([update(purchase("p9", "c1", 0), clv=1500.0, clv_percentile=0.995,
                           features={"orders": 3, "revenue": 801.7})])
    assert "CLV 1,500.00 EUR" in high.alert.reason and "801.70 EUR spent" in high.alert.reason
    assert "$" not in churn.reason + high.alert.reason


def test_reasons_without_a_purchase_give_plain_amounts() -> None:
    """Verify that a reason triggered by a click or ticket, whose currency is unknown, gives
    amounts as plain numbers rather than a guessed currency."""
    drivers = [{"feature": "revenue", "value": 1234.5, "contribution": 0.9}]
    churn = run([update(click(f"e{i}", "c1", i * 60), churn_probability=0.9,
                        churn_explanation=drivers) for i in range(3)])[2][0].alert
    assert churn.reason.endswith(": 1,234.50 spent")
    [[high]] = run([update(ticket("t1", "c1", 0), clv=1500.0, clv_percentile=0.995,
                           features={"orders": 3, "revenue": 801.7})])
    assert "CLV 1,500.00, " in high.alert.reason and high.alert.reason.endswith(
        "3 orders, 801.70 spent")


def test_high_value_waits_for_enough_customers_to_rank_against() -> None:
    """Verify that a top percentile among fewer than min_customers customers fires nothing."""
    config = AlertConfig.model_validate({"high_value": {"cooldown": 0, "min_customers": 100}})
    few = update(purchase("p1", "c1", 0), clv=500.0, clv_percentile=1.0, clv_population=12)
    many = update(purchase("p2", "c1", 60), clv=500.0, clv_percentile=1.0, clv_population=100)
    decisions = run([few, many], config=config)
    assert emitted(decisions, AlertKind.HIGH_VALUE) == [1]


# -- negative_ticket -------------------------------------------------------------------------


@pytest.mark.parametrize(("sentiment", "csat", "fires"), [
    (-0.7, None, True), (-0.25, None, True), (-0.1, 2, True), (-0.1, 3, False),
    (None, None, False), (-0.2, None, False),
])
def test_negative_ticket_by_sentiment_or_low_csat(sentiment: float | None, csat: int | None,
                                                  fires: bool) -> None:
    """Verify that a ticket alerts on sentiment below the threshold or CSAT <= 2."""
    event = ticket("t1", "c1", 0, "resolved" if csat else "opened", csat=csat)
    decisions = run([update(event, sentiment=sentiment, urgency=0.82)])[0]
    assert bool(decisions) is fires
    if fires:
        alert = decisions[0].alert
        assert alert.kind is AlertKind.NEGATIVE_TICKET
        assert "urgency high (0.82)" in alert.reason
        assert alert.model_version == "sent-2"


def test_negative_ticket_is_not_a_marketing_alert() -> None:
    """Verify that a customer's declined consent does not hold back service alerts."""
    event = ticket("t1", "c1", 0, consent=False)
    [[decision]] = run([update(event, sentiment=-0.9, urgency=0.2)])
    assert decision.outcome is Outcome.EMIT
    assert decision.alert.reason == ("Negative support ticket t-t1 (email, opened): sentiment "
                                     "-0.90 (threshold -0.20), urgency low (0.20)")


# -- anomalous_purchase ----------------------------------------------------------------------


def test_anomalous_purchase_explains_with_the_models_reason() -> None:
    """Verify that an anomaly score at the threshold alerts, saying why in words."""
    odd = update(purchase("p1", "c1", 0, total=950.0), anomaly_score=0.97,
                 anomaly_reason="order of 950.00 is 8.3x this customer's typical 114.00",
                 features={"avg_order_value": 190.0})
    usual = update(purchase("p2", "c1", 60), anomaly_score=0.3, anomaly_reason="ordinary")
    [[alert_decision], none] = run([odd, usual])
    assert none == []
    alert = alert_decision.alert
    assert alert.reason == ("Unusual purchase o-p1 of 950.00 EUR: anomaly score 0.97 (threshold "
                            "0.90); order of 950.00 is 8.3x this customer's typical 114.00")
    assert [(c.feature, c.contribution) for c in alert.explanation] == [
        ("anomaly_score", 0.07), ("order_total", 4.0)]


# -- segment_change --------------------------------------------------------------------------


def test_segment_change_names_both_segments() -> None:
    """Verify that a move between segments alerts with both labels, remembered if not given."""
    updates = [
        update(click("e1", "c1", 0), segment=2, segment_label="Bargain hunters",
               previous_segment=None),
        update(click("e2", "c1", 1), segment=2, segment_label="Bargain hunters",
               previous_segment=2),
        update(click("e3", "c1", 2), segment=4, segment_label="Loyal high spenders",
               previous_segment=2),
    ]
    decisions = run(updates)
    assert emitted(decisions) == [2]
    assert decisions[2][0].alert.reason == (
        'Moved from segment 2 "Bargain hunters" to segment 4 "Loyal high spenders"')


# -- consent ---------------------------------------------------------------------------------


def test_declined_consent_suppresses_marketing_kinds_and_is_remembered() -> None:
    """Verify that consent=False suppresses marketing alerts, also on later consent-less events."""
    updates = churn_updates([0.8, 0.8, 0.8])
    updates[0] = update(click("c1-e0.0", "c1", 0, consent=False), churn_probability=0.8)
    updates = [updates[0]] + [update(u.event, churn_probability=0.8) for u in updates[1:]]
    decisions = run(updates)
    assert [d.outcome for d in decisions[2]] == [Outcome.SUPPRESSED_CONSENT]


def test_unknown_consent_is_allowed_unless_configured() -> None:
    """Verify that unknown consent sends marketing alerts by default and not when configured."""
    story = update(click("e1", "c1", 0), segment=1, previous_segment=0)
    assert run([story])[0][0].outcome is Outcome.EMIT
    strict = AlertConfig.model_validate({"consent": {"suppress_when_unknown": True}})
    assert run([story], config=strict)[0][0].outcome is Outcome.SUPPRESSED_CONSENT


def test_a_disabled_kind_never_fires() -> None:
    """Verify that `enabled: false` turns a kind off."""
    config = AlertConfig.model_validate({"negative_ticket": {"enabled": False}})
    assert run([update(ticket("t1", "c1", 0), sentiment=-1.0)], config=config) == [[]]


# -- cart_abandonment ------------------------------------------------------------------------


def fire(state: CustomerAlertState, event_id: str, watermark_min: float,
         last_order_min: float | None = None, config: AlertConfig | None = None
         ) -> Decision | None:
    return fire_cart(tenant="default", customer_id="c1", event_id=event_id, state=state,
                     config=config or AlertConfig(), watermark_ms=ms(at(watermark_min)),
                     last_order_at_ms=None if last_order_min is None else ms(at(last_order_min)),
                     cart_adds=2, profile_exists=True, now=NOW)


def test_add_to_cart_opens_a_timer_of_t_minutes_in_event_time() -> None:
    """Verify that an add-to-cart opens a cart due T after its event time; a later add moves it."""
    state = CustomerAlertState()
    run([update(click("a1", "c1", 0, kind="add_to_cart"), partition=2)], state)
    assert state.cart is not None
    assert (state.cart.event_id, state.cart.partition) == ("a1", 2)
    assert state.cart.deadline_ms == ms(at(30))
    run([update(click("a2", "c1", 10, kind="add_to_cart"))], state)
    assert state.cart.event_id == "a2" and state.cart.deadline_ms == ms(at(40))
    run([update(click("a0", "c1", 5, kind="add_to_cart"))], state)  # late and older: no change
    assert state.cart.event_id == "a2"


def test_a_purchase_after_the_add_closes_the_cart_and_an_earlier_one_does_not() -> None:
    """Verify that only a purchase at or after the cart's time closes it."""
    state = CustomerAlertState()
    run([update(click("a1", "c1", 10, kind="add_to_cart")), update(purchase("p0", "c1", 5))],
        state)
    assert state.cart is not None
    run([update(purchase("p1", "c1", 12))], state)
    assert state.cart is None


def test_no_cart_without_a_partition_or_when_already_bought() -> None:
    """Verify that an add-to-cart opens no timer without a partition or after a later order."""
    state = CustomerAlertState()
    run([update(click("a1", "c1", 10, kind="add_to_cart"), partition=None)], state)
    assert state.cart is None
    run([update(click("a2", "c1", 10, kind="add_to_cart"),
                features={"last_order_at": ms(at(11))})], state)
    assert state.cart is None


def test_an_abandoned_cart_fires_once_with_a_reason() -> None:
    """Verify that a due cart fires, then repeats (same alert) if its timer is seen again."""
    state = CustomerAlertState()
    run([update(click("a1", "c1", 0, kind="add_to_cart", product="p-17"))], state)
    decision = fire(state, "a1", watermark_min=31)
    assert decision is not None and decision.outcome is Outcome.EMIT
    alert = decision.alert
    assert alert.kind is AlertKind.CART_ABANDONMENT and alert.triggered_by == "a1"
    assert alert.occurred_at == at(0)
    assert alert.reason == ("Cart abandoned: added product p-17 to the cart at 2025-03-01 09:00 "
                            "UTC and no purchase within 30 minutes (2 cart adds so far)")
    assert state.cart is None
    again = fire(state, "a1", watermark_min=45)
    assert again is not None and again.outcome is Outcome.REPEAT and again.alert == alert


@pytest.mark.parametrize(("last_order", "consent", "expected"), [
    (0, None, None),  # bought at the very time of the add: not abandoned
    (-5, None, Outcome.EMIT),  # bought before the add: abandoned
    (None, False, Outcome.SUPPRESSED_CONSENT),
])
def test_cart_fires_unless_bought_since_or_consent_declined(
    last_order: float | None, consent: bool | None, expected: Outcome | None
) -> None:
    """Verify that the profile's last order and the customer's consent decide a due cart."""
    state = CustomerAlertState()
    run([update(click("a1", "c1", 0, kind="add_to_cart"), consent=consent)], state)
    decision = fire(state, "a1", watermark_min=31, last_order_min=last_order)
    assert (decision.outcome if decision else None) is expected


def test_a_replaced_cart_timer_is_moot() -> None:
    """Verify that the timer of an add-to-cart replaced by a later one does not fire."""
    state = CustomerAlertState()
    run([update(click("a1", "c1", 0, kind="add_to_cart")),
         update(click("a2", "c1", 20, kind="add_to_cart"))], state)
    assert fire(state, "a1", watermark_min=31) is None
    assert state.cart is not None and state.cart.event_id == "a2"


# -- state -----------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    """Verify that everything the rules remember survives storage."""
    state = CustomerAlertState()
    cart = update(click("a1", "c1", 500, kind="add_to_cart"), segment=1, segment_label="x")
    run([*churn_updates([0.8, 0.8, 0.8]), cart], state)
    restored = CustomerAlertState.from_json(state.to_json())
    assert restored == state
    assert restored.cart is not None and restored.cart.deadline_ms == ms(at(500)) + 30 * MINUTE_MS


def test_the_state_knows_the_last_64_triggers_also_once_stored_and_read_back() -> None:
    """Verify that a trigger among the last 64 is a redelivery, an older one is not, and
    that this holds the same for a state read back from its JSON."""
    state = CustomerAlertState()
    assert all(state.remember(f"e{n}", alert_rules.SEEN_LIMIT) for n in range(100))
    assert state.seen == [f"e{n}" for n in range(36, 100)]
    for current in (state, CustomerAlertState.from_json(state.to_json())):
        assert not current.remember("e36", alert_rules.SEEN_LIMIT)
        assert not current.remember("e99", alert_rules.SEEN_LIMIT)
        assert current.remember("e35", alert_rules.SEEN_LIMIT)  # forgotten: counted again
        assert "e36" not in current.seen and not current.remember("e37", alert_rules.SEEN_LIMIT)
        assert current.remember("e36", alert_rules.SEEN_LIMIT)


def test_a_redelivered_trigger_repeats_its_alert_after_a_later_one_of_its_kind() -> None:
    """Verify that a trigger whose alert a later alert of the same kind replaced as the last
    of its kind still repeats it when redelivered (the state is stored and read back in
    between, as when a worker dies before the broker has the batch's alerts), and that
    only alerts whose trigger the state still knows as seen are kept for that."""
    state = CustomerAlertState()
    first = update(ticket("t1", "c1", 0, status="resolved", csat=1), sentiment=-0.8)
    second = update(ticket("t2", "c1", 7 * 60, status="resolved", csat=1), sentiment=-0.8)
    [[one], [two]] = run([first, second], state)
    assert (one.outcome, two.outcome) == (Outcome.EMIT, Outcome.EMIT)
    restored = CustomerAlertState.from_json(state.to_json())
    [[again_one], [again_two]] = run([first, second], restored)
    assert (again_one.outcome, again_one.alert) == (Outcome.REPEAT, one.alert)
    assert (again_two.outcome, again_two.alert) == (Outcome.REPEAT, two.alert)
    for n in range(alert_rules.SEEN_LIMIT):
        restored.remember(f"e{n}", alert_rules.SEEN_LIMIT)
    third = update(ticket("t3", "c1", 14 * 60, status="resolved", csat=1), sentiment=-0.8)
    run([third], restored)
    assert [fired.triggered_by for fired in restored.earlier] == []
    assert restored.fired[AlertKind.NEGATIVE_TICKET].triggered_by == "t3"
