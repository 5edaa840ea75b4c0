"""Ticket triage judged offline on hand-labelled tickets our templates did not write.

The subject is :class:`online_models.triage.TicketTriage` (category) and the sentiment
model's urgency, fed in this process. The data are ``load_tests/quality/data/
tickets_test.tsv`` (see the README beside it for why it is hand-written and what was
searched first); ``tickets_dev.tsv`` was read while writing the keyword lists and is only
shown for reference.

Measured: the keyword prior alone on every test ticket; then, over random half splits of
the test tickets (stratified by category), the triage after learning the labels of one half
(in random order, as a support tool would give them) judged on the other half, beside the
prior alone and the classifier alone (the same ``BagOfWords | MultinomialNB`` without the
prior) on that half; a learning curve; and urgency's ROC-AUC against the ``urgent`` labels.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from river import feature_extraction, naive_bayes
from sklearn.metrics import roc_auc_score

from load_tests.report import reproduce_line, run_sentence, table, title, write_report
from online_models.sentiment import SentimentModel
from online_models.triage import CATEGORIES, TicketCategory, TicketTriage

DATA = Path(__file__).resolve().parent / "data"
RESULTS = Path(__file__).resolve().parents[1] / "results"
LABELS_SEEN = (0, 10, 25, 50, 114)


@dataclass(frozen=True)
class Ticket:
    text: str
    category: TicketCategory
    urgent: bool


def load(name: str) -> list[Ticket]:
    with (DATA / name).open(newline="") as handle:
        return [Ticket(row["text"], cast(TicketCategory, row["category"]), row["urgent"] == "1")
                for row in csv.DictReader(handle, delimiter="\t")]


def accuracy(predicted: Sequence[str], tickets: Sequence[Ticket]) -> float:
    return sum(p == t.category for p, t in zip(predicted, tickets, strict=True)) / len(tickets)


def stratified_split(tickets: Sequence[Ticket], rng: random.Random) -> tuple[list[Ticket],
                                                                            list[Ticket]]:
    train: list[Ticket] = []
    test: list[Ticket] = []
    for category in CATEGORIES:
        group = [t for t in tickets if t.category == category]
        rng.shuffle(group)
        half = len(group) // 2
        train += group[:half]
        test += group[half:]
    rng.shuffle(train)
    return train, test


def classifier_alone() -> Any:
    return feature_extraction.BagOfWords(lowercase=True, ngram_range=(1, 2)) | \
        naive_bayes.MultinomialNB(alpha=0.5)


def count_weighted(prior: TicketTriage, alone: Any, text: str, labels: int,
                   strength: float = 30.0) -> str:
    """The blend first tried: the classifier's weight ``n / (n + strength)`` after ``n``
    labels, whatever its record (the sentiment model's rule), on the categories it knows."""
    keywords = prior.keyword_probabilities(text)
    learned = alone.predict_proba_one(text)
    known = sum(p for c, p in keywords.items() if c in learned)
    weight = labels / (labels + strength)
    blended = {c: (1 - weight) * p + weight * known * learned[c] if c in learned else p
               for c, p in keywords.items()}
    return max(CATEGORIES, key=blended.__getitem__)


@dataclass
class SplitResult:
    prior: float
    triage: float
    alone: float
    count_weighted: float
    curve: dict[int, float]
    progressive: float
    progressive_prior: float
    classifier_weight: float


def run_split(tickets: Sequence[Ticket], seed: int) -> SplitResult:
    rng = random.Random(seed)
    train, test = stratified_split(tickets, rng)
    triage = TicketTriage()
    alone = classifier_alone()
    curve: dict[int, float] = {}
    for seen in range(len(train) + 1):
        if seen in LABELS_SEEN or seen == len(train):
            curve[seen] = accuracy([triage.classify(t.text).category for t in test], test)
        if seen < len(train):
            ticket = train[seen]
            triage.learn(ticket.text, ticket.category)
            alone.learn_one(ticket.text, ticket.category)
    prior = TicketTriage()
    return SplitResult(
        prior=accuracy([prior.classify(t.text).category for t in test], test),
        triage=curve[len(train)],
        alone=accuracy([alone.predict_one(t.text) for t in test], test),
        count_weighted=accuracy([count_weighted(prior, alone, t.text, len(train))
                                 for t in test], test),
        curve=curve, progressive=triage.accuracy.get(),
        progressive_prior=triage.keyword_accuracy.get(),
        classifier_weight=triage.classifier_weight)


def confusion_rows(tickets: Sequence[Ticket], predicted: Sequence[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for truth in CATEGORIES:
        counts = [sum(1 for t, p in zip(tickets, predicted, strict=True)
                      if t.category == truth and p == guess) for guess in CATEGORIES]
        total = sum(counts)
        rows.append([truth, *counts, f"{counts[CATEGORIES.index(truth)] / total:.2f}"])
    return rows


def mean_sd(values: Sequence[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def urgency_rows(tickets: Sequence[Ticket]) -> tuple[float, list[list[object]]]:
    model = SentimentModel()
    scores = [model.score(t.text).urgency for t in tickets]
    labels = [int(t.urgent) for t in tickets]
    auc = float(roc_auc_score(labels, scores))
    rows: list[list[object]] = []
    for name, threshold in [("medium or high (>= 0.4)", 0.4), ("high (>= 0.7)", 0.7)]:
        flagged = [s >= threshold for s in scores]
        hits = sum(1 for f, t in zip(flagged, tickets, strict=True) if f and t.urgent)
        rows.append([name, sum(flagged), f"{hits / max(sum(flagged), 1):.2f}",
                     f"{hits / sum(labels):.2f}"])
    return auc, rows


def cost_us(tickets: Sequence[Ticket]) -> float:
    triage = TicketTriage()
    for ticket in tickets:
        triage.learn(ticket.text, ticket.category)
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for ticket in tickets:
            triage.classify(ticket.text)
    return (time.perf_counter() - started) / (rounds * len(tickets)) * 1e6


def render(tickets: list[Ticket], dev: list[Ticket], splits: list[SplitResult],
           seconds: float) -> str:
    prior = TicketTriage()
    predicted = [prior.classify(t.text).category for t in tickets]
    dev_accuracy = accuracy([prior.classify(t.text).category for t in dev], dev)
    auc, urgency = urgency_rows(tickets)
    counts = {c: sum(t.category == c for t in tickets) for c in CATEGORIES}
    train_size = len(tickets) - sum(math.ceil(n / 2) for n in counts.values())
    lines = [*title("Ticket triage quality"),
             f"{run_sentence()}, in {seconds:.0f} s. Offline, in this process: "
             "`online_models.triage.TicketTriage` and the sentiment model's urgency, on "
             f"{len(tickets)} hand-labelled test tickets ("
             + ", ".join(f"{n} {c}" for c, n in counts.items()) + "; "
             f"{sum(t.urgent for t in tickets)} urgent). No public labelled support-ticket set "
             "could be obtained from the package registries here; "
             "[data/README.md](../quality/data/README.md) says what was searched, how the "
             "tickets were written and their caveats (one author wrote texts, labels and "
             "keywords: the prior's figures are likely optimistic).", ""]
    lines += ["## The keyword prior alone (no label learnt)", "",
              f"Accuracy on all {len(tickets)} test tickets: **{accuracy(predicted, tickets):.3f}**"
              f" (on the {len(dev)} development tickets read while writing the keywords: "
              f"{dev_accuracy:.3f}). Rows: the true category; columns: the one given.", "",
              *table(["true \\ given", *CATEGORIES, "recall"], confusion_rows(tickets, predicted),
                     align="l" + "r" * (len(CATEGORIES) + 1)), ""]
    lines += [f"## After learning labels ({len(splits)} random half splits)", "",
              f"Each split learns the labels of {train_size} tickets (stratified half, random "
              "order) and is judged on the other half; mean ± standard deviation over the "
              "splits.", "",
              *table(["on the held-out half", "accuracy"], [
                  ["keyword prior alone", mean_sd([s.prior for s in splits])],
                  ["classifier alone (BagOfWords \\| MultinomialNB, no prior)",
                   mean_sd([s.alone for s in splits])],
                  ["first tried: blend weighted by label count, n / (n + 30)",
                   mean_sd([s.count_weighted for s in splits])],
                  ["**triage: the two mixed by track record**",
                   mean_sd([s.triage for s in splits])],
              ], align="lr"), "",
              "Learning curve of the triage on the held-out half:", "",
              *table(["labels learnt", "accuracy"],
                     [[seen, mean_sd([s.curve[seen] for s in splits])]
                      for seen in sorted(splits[0].curve)], align="rr"), "",
              "Progressive accuracy while learning the training half (each ticket classified "
              f"before its label is learnt, as `/v1/models` shows it): served "
              f"{mean_sd([s.progressive for s in splits])}, keyword prior "
              f"{mean_sd([s.progressive_prior for s in splits])}.", "",
              "What this says: on generic tickets whose words the keywords already hold, a "
              "hundred labels do not teach a naive Bayes more than the keywords know (alone it "
              "reaches 0.59). Weighted by label count, it took over anyway and cost 0.2 of "
              "accuracy; mixed by track record, the classifier's weight stays at "
              f"{mean_sd([s.classifier_weight for s in splits])} after the training half and "
              "the triage stays within a standard deviation of the prior. Labels pay where a "
              "shop's words are its own (product names, its courier, its loyalty scheme), "
              "which hand-written generic tickets cannot show; "
              "`tests/unit/test_online_models_triage.py` plants that case.", ""]
    lines += ["## Urgency", "",
              f"ROC-AUC of the urgency score against the `urgent` labels: **{auc:.3f}** "
              "(0.815 with the word list before this change, measured on the same tickets; "
              "the added words were chosen from principles and the development tickets, "
              "but by the author of the test tickets).", "",
              *table(["urgency band (alert wording)", "tickets", "precision", "recall"],
                     urgency, align="lrrr"), ""]
    lines += [f"Cost: {cost_us(tickets):.0f} µs to classify a ticket after learning "
              f"{len(tickets)} labels (keywords, bag of words, naive Bayes).", "",
              reproduce_line("python -m load_tests.quality.triage")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "TRIAGE.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tickets, dev = load("tickets_test.tsv"), load("tickets_dev.tsv")
    splits = [run_split(tickets, seed) for seed in range(args.splits)]
    write_report(args.output, render(tickets, dev, splits, time.monotonic() - started))


if __name__ == "__main__":
    main()
