"""Ticket sentiment learns from CSAT; purchase anomalies come with a reason."""

from __future__ import annotations

from online_models.anomaly import PurchaseAnomaly
from online_models.sentiment import SentimentModel, lexicon_sentiment, urgency


def test_lexicon_prior_handles_negation_and_urgency() -> None:
    """Verify the cold-start prior: polarity, negation and urgency."""
    assert lexicon_sentiment("thanks, works great") > 0
    assert lexicon_sentiment("this is not great") < 0
    assert urgency("URGENT, my account is blocked!!") > 0.5 > urgency("when do you open?")


def test_sentiment_learns_from_csat() -> None:
    """Verify that CSAT at resolution teaches words the lexicon does not know."""
    model = SentimentModel(prior_strength=10)
    text_bad, text_good = "the courier left it in the rain", "the courier rang the bell"
    assert model.score(text_bad).sentiment == 0.0 == model.score(text_good).sentiment
    assert model.learn("neutral words here", csat=3) is False  # a 3 teaches nothing
    for _ in range(100):
        model.learn("left it in the rain soaked", csat=1)
        model.learn("rang the bell handed over", csat=5)
    bad, good = model.score(text_bad), model.score(text_good)
    assert bad.sentiment < -0.3 and good.sentiment > 0.3
    assert bad.source == "model"
    assert model.metrics_dict()["accuracy"] > 0.9


def test_anomaly_flags_an_outlier_with_a_reason() -> None:
    """Verify that an order far above the customer's history scores high and says why."""
    detector = PurchaseAnomaly()
    history = [100.0, 110.0, 120.0, 105.0, 115.0, 98.0]
    outlier = detector.score(950.0, basket_size=3, history=history)
    usual = detector.score(112.0, basket_size=3, history=history)
    assert outlier.score > 0.9 > 0.1 > usual.score
    assert outlier.reason == "order of 950.00 is 8.8x this customer's typical 107.50"
    assert outlier.source == "customer"


def test_anomaly_uses_the_global_model_without_history() -> None:
    """Verify that a new customer's order is judged by the global model."""
    detector = PurchaseAnomaly(window_size=50)
    for i in range(500):
        detector.learn(20.0 + (i % 40), basket_size=1 + i % 3)
    odd = detector.score(40_000.0, basket_size=400)
    plain = detector.score(35.0, basket_size=2)
    assert odd.source == plain.source == "global"
    assert odd.score > plain.score
    assert "all customers" in odd.reason


def test_sentiment_learns_nothing_from_a_text_without_words() -> None:
    """Verify that tickets whose text has no word (found by the hostile-input tests: both
    classes 'seen' with an empty vocabulary made scoring divide by zero) are not learnt,
    and that scoring after them works."""
    model = SentimentModel(prior_strength=10)
    assert not model.learn("!!!", 1) and not model.learn(" \x00 ", 5)
    assert model.score("anything").source == "lexicon"
    assert model.learn("awful broken", 1) and model.learn("great thanks", 5)
    assert -1.0 <= model.score("??").sentiment <= 1.0


def test_a_text_scored_again_once_the_model_learnt_is_scored_afresh() -> None:
    """Verify that scoring a text twice gives the same score, and that after learning the
    same text scores anew (the worker scores a ticket, then learns from it)."""
    model = SentimentModel(prior_strength=5)
    for _ in range(10):
        model.learn("the lid squeaks", csat=1)
        model.learn("arrived on time", csat=5)
    before = model.score("the lid squeaks again")
    assert model.score("the lid squeaks again") == before
    for _ in range(30):
        model.learn("the lid squeaks again", csat=5)
    assert model.score("the lid squeaks again").sentiment > before.sentiment + 0.2
