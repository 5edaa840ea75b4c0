"""Ticket triage: a keyword prior from the first ticket, a shop's own words learnt from the
categories its support tool gives, and the prior kept where no label was ever given."""

from __future__ import annotations

import pickle

import pytest

from online_models.triage import CATEGORIES, TicketTriage, keyword_scores


@pytest.mark.parametrize(("text", "category"), [
    ("I want a refund, you took the payment twice", "billing"),
    ("The courier says delivered but no parcel at my door", "delivery"),
    ("The zipper broke after a day, is it under warranty?", "product"),
    ("I forgot my password and cannot log in", "account"),
    ("What are your opening hours on Sunday?", "other"),
    ("hello?", "other"),
])
def test_keyword_prior_at_cold_start(text: str, category: str) -> None:
    """Verify that an untrained triage names the obvious category from keywords alone."""
    result = TicketTriage().classify(text)
    assert (result.category, result.source) == (category, "keywords")


def test_keyword_scores_match_stems_and_phrases() -> None:
    """Verify word stems (refund*), exact words and two- and three-word phrases."""
    scores = keyword_scores("Refunded? Out of stock, back in stock when? My money back please")
    assert scores["billing"] == 2.0 + 2.0 + 1.0  # refund*, "money back", money
    assert scores["product"] == 2.0 + 2.0 + 2.0  # "out of stock", "back in stock", "in stock"
    assert scores["delivery"] == -1.0  # "in stock" speaks against delivery


def test_shop_words_are_learnt_from_labels() -> None:
    """Verify that labels teach words the prior does not know (a shop's product names), and
    that progressive accuracy then beats the keyword prior's."""
    triage = TicketTriage()
    labelled = [("my gizmotron hums and rattles", "product"),
                ("the fluxbox rattles when on", "product"),
                ("kindly sort out the voucherless deal", "billing"),
                ("wrong sum on the deal you sent", "billing"),
                ("lovely people, well done", "other")]
    assert triage.classify("gizmotron rattles").category == "other"
    for _ in range(30):
        for text, category in labelled:
            triage.learn(text, category)  # type: ignore[arg-type]
    assert triage.classify("gizmotron rattles").category == "product"
    assert triage.classify("the deal sum").category == "billing"
    metrics = triage.metrics_dict()
    assert metrics["examples"] == 150
    assert metrics["accuracy"] > metrics["keyword_accuracy"]
    assert triage.classify("the deal sum").source == "model"


def test_categories_never_labelled_keep_the_prior() -> None:
    """Verify that a shop labelling only billing tickets still gets delivery and account
    tickets called so by the prior, however many billing labels the model has."""
    triage = TicketTriage()
    for i in range(500):
        triage.learn(f"charge {i} on my statement is wrong", "billing")
    assert triage.classify("my parcel is lost, tracking stopped").category == "delivery"
    assert triage.classify("reset my password please").category == "account"
    assert triage.classify("charged twice").category == "billing"
    probabilities = triage.probabilities("my parcel is lost")
    assert set(probabilities) == set(CATEGORIES)
    assert abs(sum(probabilities.values()) - 1.0) < 1e-9


def test_triage_checkpoints() -> None:
    """Verify that a pickled triage classifies and learns on exactly like the original."""
    triage = TicketTriage()
    for _ in range(5):
        triage.learn("box crushed in the van", "delivery")
    restored = pickle.loads(pickle.dumps(triage))
    assert restored.probabilities("van crushed it") == triage.probabilities("van crushed it")
    assert restored.learn("lid cracked", "product") == triage.learn("lid cracked", "product")
    assert restored.metrics_dict() == triage.metrics_dict()


def test_a_text_classified_again_once_the_model_learnt_is_judged_afresh() -> None:
    """Verify that classifying a text twice gives the same answer, and that after learning
    its label the same text is judged anew (the worker classifies a ticket, then learns)."""
    triage = TicketTriage()
    for _ in range(10):
        triage.learn("the gadget hums", "product")
        triage.learn("charged twice", "billing")
        triage.learn("lovely shop, well done", "other")
    before = triage.classify("it hums and rattles")
    assert triage.classify("it hums and rattles") == before
    assert before.category == "product"
    for _ in range(15):
        triage.learn("it hums and rattles", "billing")
    assert triage.classify("it hums and rattles").category == "billing"
