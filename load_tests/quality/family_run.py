"""One shop family through the real pipeline, judged on what the API and the alert topic serve.

The shop's first part (all but the last ``holdout_days``) is replayed through the producer
SDK into Kafka and ``crm worker``; once the silence sweep has scored every customer at the
watermark, the served churn probabilities, CLVs and recommendation lists are read over HTTP
(snapshot A). Then the holdout is replayed and everything is read again (snapshot B), with the
segments, the models' own metrics and every alert on ``crm.alerts``. Scored against the
planted truth, which the models never see:

* churn: snapshot B's probabilities against "stopped for good" (ROC-AUC); snapshot A's
  against the model's own label, "no activity within the horizon" of the snapshot, beside
  the model's progressive ROC-AUC on the same label, which must agree within
  :data:`GAP_LIMIT`;
* segments: snapshot B's segments against the planted behaviour groups (ARI), beside the
  ceiling of :func:`segments_ari_ceiling` (a classifier given the groups, on the same
  behaviour vectors);
* sentiment: a clear-cut ticket counts as judged negative when a ``negative_ticket`` alert
  was triggered by one of its events before it was resolved (the text alone; CSAT comes at
  resolution): accuracy, recall of the negative ones, and the share of false alerts;
* CLV: snapshot A's CLV against each customer's spend in the holdout (Spearman);
* recommendations: snapshot A's top 10 against the products each customer first bought in
  the holdout (hit rate), beside a popularity top 10 (the most bought before the holdout,
  without what the customer had bought); and the share of recommended products in the
  customer's favourite category.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from load_tests.quality.families import Shop, generate_shop
from load_tests.quality.served import ServedApi, ServedProfile, read_alerts
from load_tests.quality.stack import LocalStack, Message, PipelineRun

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: Served and self-reported quality of one model may differ by this much, not more.
GAP_LIMIT = 0.05
START = datetime(2025, 1, 1, tzinfo=UTC)
TOPIC_OF = {"click": "shop.clicks", "purchase": "shop.purchases", "ticket": "support.tickets"}


@dataclass(frozen=True)
class FamilyConfig:
    """One shop of a family (or the simulated shop, ``family="simulated"``) and its run."""

    family: str
    customers: int = 600
    days: float = 120.0
    seed: int = 11
    holdout_days: float = 30.0
    partitions: int = 3
    #: How far the producer may run ahead of the worker: a replay of months in minutes
    #: reads topics at paces of their own, and live traffic is milliseconds apart.
    max_backlog: int = 300

    def quick(self) -> FamilyConfig:
        return FamilyConfig(self.family, customers=250, days=self.days, seed=self.seed,
                            holdout_days=self.holdout_days, partitions=2)


@dataclass
class FamilyResult:
    config: FamilyConfig
    groups: tuple[str, ...]
    events: int
    customers: int
    churn_share: float
    sweep_lag_s: list[float]
    metrics: dict[str, float | None]
    #: For the plots: served churn at the end and the truth, per customer.
    churn_scores: list[float] = field(default_factory=list)
    churned: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    group_of: list[int] = field(default_factory=list)
    clv: list[float] = field(default_factory=list)
    holdout_spend: list[float] = field(default_factory=list)
    segment_labels: dict[int, str] = field(default_factory=dict)

    @property
    def churn_gap(self) -> float | None:
        """Served against the model's own scores of the same customers at the same time."""
        served, own = self.metrics.get("churn_auc_truth"), self.metrics.get(
            "churn_auc_truth_own")
        return None if served is None or own is None else abs(served - own)


def _messages(events: list[dict[str, Any]], run: PipelineRun) -> list[Message]:
    topics = {kind: run.settings.topic(name) for kind, name in TOPIC_OF.items()}
    return [(topics[event["type"]], event.get("customer_id") or "anon:" + event["anonymous_id"],
             orjson.dumps(event)) for event in events]


def run_family(stack: LocalStack, config: FamilyConfig, *, progress: bool = True
               ) -> FamilyResult:
    """Generate the family's shop, replay it, and score what was served."""
    shop = generate_shop(config.family, customers=config.customers, days=config.days,
                         seed=config.seed, start=START)
    return run_shop(stack, shop, config, progress=progress)


def run_shop(stack: LocalStack, shop: Shop, config: FamilyConfig, *, progress: bool = True
             ) -> FamilyResult:
    """Replay ``shop`` in two parts and score what was served after each."""
    cutoff = shop.end_ms - round(config.holdout_days * DAY_MS)
    run = PipelineRun(stack=stack, name=f"family-{config.family}",
                      overrides={"partitions": config.partitions, "telemetry_interval_s": 1.0},
                      progress=progress)
    customers = sorted(shop.truth)
    run.start()
    try:
        with ServedApi(run.settings, log_path=run.work_dir / "api.log") as api:
            first = shop.events_until(cutoff)
            run.produce(_messages(first, run), total=len(first),
                        desc=f"{config.family} until the holdout → Kafka",
                        max_backlog=config.max_backlog)
            run.wait_until_processed()
            lag_a = api.wait_until_scored(customers, run.model_watermark())
            at_a = run.model_watermark()
            snapshot_a = api.profiles(customers)
            lists = api.recommendations(customers)
            rest = shop.events_after(cutoff)
            run.produce(_messages(rest, run), total=len(rest),
                        desc=f"{config.family} holdout → Kafka", max_backlog=config.max_backlog)
            run.wait_until_processed()
            at_b = run.model_watermark()
            lag_b = api.wait_until_scored(customers, at_b)
            snapshot_b = api.profiles(customers)
            models = api.models(published_after_ms=round(time.time() * 1000))
            segments = api.segments()
    finally:
        run.stop_worker()
    alerts = read_alerts(run.settings)
    result = score_family(shop, config, cutoff=cutoff, at_a=at_a, snapshot_a=snapshot_a,
                          lists=lists, snapshot_b=snapshot_b, models=models,
                          segments=segments, alerts=alerts, sweep_lag_s=[lag_a, lag_b])
    profiles = {customer: model_input.profile
                for customer, model_input in run.profiles(sorted(shop.truth)).items()}
    result.metrics["churn_auc_truth_own"] = _own_churn_auc(run, shop, profiles, at_b)
    result.metrics["segments_ari_ceiling"] = segments_ari_ceiling(shop, profiles)
    return result


def _own_churn_auc(run: PipelineRun, shop: Shop, profiles: dict[str, dict[str, Any]],
                   watermark_ms: int) -> float | None:
    """The same customers scored at the same time by the worker's final checkpoint (the
    model's own view of what it served): any difference is a serving bug, a stale score or a
    second code path."""
    from online_models import model_statuses, score_customer, scoring_time

    bundle = run.final_bundle()
    statuses = model_statuses(bundle)
    scores = {customer: score_customer(bundle, shop.tenant, profile,
                                       scoring_time(profile, watermark_ms),
                                       statuses).churn_probability
              for customer, profile in profiles.items()}
    scored = [customer for customer, probability in scores.items() if probability is not None]
    return _auc([int(shop.truth[c].churned) for c in scored],
                [float(scores[c] or 0.0) for c in scored])


def segments_ari_ceiling(shop: Shop, profiles: dict[str, dict[str, Any]]) -> float | None:
    """How far the planted groups can be told apart at all in what the segmenter sees: a
    logistic regression *given the groups*, on the same behaviour vectors (standardized,
    gaps filled with the median, as the segmenter does), predicting each customer from
    folds it did not learn on; the adjusted Rand index of its predictions. No segmentation,
    which never sees the groups, can be expected to pass it: where it is low, the groups
    overlap in behaviour as observed, whatever the clustering."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from online_models import behaviour_vector

    customers = [c for c in sorted(shop.truth) if c in profiles]
    groups = np.array([shop.truth[c].group for c in customers])
    sizes = np.unique(groups, return_counts=True)[1]
    folds = min(5, int(sizes.min())) if len(sizes) else 0
    if len(sizes) < 2 or folds < 2:
        return None
    vectors = [behaviour_vector(profiles[c]) for c in customers]
    names = sorted({name for vector in vectors for name in vector})
    raw = np.array([[vector.get(name, math.nan) for name in names] for vector in vectors])
    raw = np.where(np.isnan(raw), np.nan_to_num(np.nanmedian(raw, axis=0)), raw)
    z = (raw - raw.mean(axis=0)) / np.maximum(raw.std(axis=0), 1e-9)
    predicted = cross_val_predict(LogisticRegression(max_iter=2000), z, groups, cv=folds)
    return float(adjusted_rand_score(groups, predicted))


def score_family(shop: Shop, config: FamilyConfig, *, cutoff: int, at_a: int,
                 snapshot_a: dict[str, ServedProfile], lists: dict[str, list[str]],
                 snapshot_b: dict[str, ServedProfile], models: dict[str, dict[str, Any]],
                 segments: list[dict[str, Any]], alerts: list[dict[str, Any]],
                 sweep_lag_s: list[float]) -> FamilyResult:
    customers = [c for c in sorted(shop.truth) if c in snapshot_b]
    truth = shop.truth
    metrics: dict[str, float | None] = {}
    result = FamilyResult(config=config, groups=shop.groups, events=len(shop.events),
                          customers=len(customers), churn_share=shop.churn_share,
                          sweep_lag_s=sweep_lag_s, metrics=metrics,
                          segment_labels={s["segment"]: s["label"] for s in segments})

    # Churn at the end against the planted truth.
    scored = [c for c in customers if snapshot_b[c].churn_probability is not None]
    result.churn_scores = [float(snapshot_b[c].churn_probability or 0.0) for c in scored]
    result.churned = [int(truth[c].churned) for c in scored]
    metrics["churn_auc_truth"] = _auc(result.churned, result.churn_scores)
    metrics["churn_served_share"] = len(scored) / max(1, len(customers))
    # Churn at snapshot A against the model's own label: any activity within the horizon?
    horizon_ms = 30 * DAY_MS
    active_after = _active_between(shop, at_a, at_a + horizon_ms)
    scored_a = [c for c in customers if c in snapshot_a
                and snapshot_a[c].churn_probability is not None
                and at_a + horizon_ms <= shop.end_ms]
    metrics["churn_auc_own_label"] = _auc([int(c not in active_after) for c in scored_a],
                                          [float(snapshot_a[c].churn_probability or 0.0)
                                           for c in scored_a])
    metrics["churn_auc_progressive"] = _metric(models, "churn", "roc_auc")

    # Segments against the planted groups.
    segmented = [c for c in customers if snapshot_b[c].segment is not None]
    result.segments = [int(snapshot_b[c].segment or 0) for c in segmented]
    result.group_of = [truth[c].group for c in segmented]
    metrics["segments_ari"] = float(adjusted_rand_score(result.group_of, result.segments)) \
        if segmented else None
    metrics["segments_found"] = float(len(set(result.segments)))
    metrics["segment_sizes_sum"] = float(sum(s["size"] for s in segments))

    # Sentiment, from the negative_ticket alerts on the tickets' own text.
    metrics.update(_sentiment(shop, alerts))
    metrics["sentiment_accuracy_progressive"] = _metric(models, "sentiment", "accuracy")

    # CLV at A against spend in the holdout.
    spend = _holdout_spend(shop, cutoff)
    valued = [c for c in customers if c in snapshot_a and snapshot_a[c].clv is not None]
    result.clv = [float(snapshot_a[c].clv or 0.0) for c in valued]
    result.holdout_spend = [spend.get(c, 0.0) for c in valued]
    metrics["clv_spearman"] = float(spearmanr(result.clv, result.holdout_spend).statistic) \
        if len(valued) > 2 else None

    # Recommendations at A against first purchases in the holdout.
    metrics.update(_recommendations(shop, cutoff, lists))
    return result


def _metric(models: dict[str, dict[str, Any]], model: str, name: str) -> float | None:
    value = (models.get(model) or {}).get("metrics", {}).get(name)
    return None if value is None else float(value)


def _auc(labels: list[int], scores: list[float]) -> float | None:
    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(np.asarray(labels), np.asarray(scores)))


def _active_between(shop: Shop, start_ms: int, end_ms: int) -> set[str]:
    owners = _owners(shop)
    return {owners.get(event.get("customer_id") or event["anonymous_id"], "")
            for event, at in zip(shop.events, shop.event_ms, strict=True)
            if start_ms < at <= end_ms}


def _owners(shop: Shop) -> dict[str, str]:
    """customer id -> itself, cookie id -> the customer it logged in as."""
    owners = {c: c for c in shop.truth}
    for event in shop.events:
        if event.get("anonymous_id") and event.get("customer_id"):
            owners.setdefault(event["anonymous_id"], event["customer_id"])
    return owners


def _holdout_spend(shop: Shop, cutoff: int) -> dict[str, float]:
    spend: dict[str, float] = {}
    for event in shop.events_after(cutoff):
        if event["type"] == "purchase":
            customer = event["customer_id"]
            spend[customer] = spend.get(customer, 0.0) + float(event["total"])
    return spend


def _sentiment(shop: Shop, alerts: list[dict[str, Any]]) -> dict[str, float | None]:
    before_resolution: dict[str, str] = {}  # event id -> ticket id, opened or replied
    for event in shop.events:
        if event["type"] == "ticket" and event["status"] != "resolved":
            before_resolution[event["event_id"]] = event["ticket_id"]
    alerted = {before_resolution[a["triggered_by"]] for a in alerts
               if a["kind"] == "negative_ticket" and a["triggered_by"] in before_resolution}
    clear = {ticket: label for ticket, label in shop.ticket_truth.items() if label != 0}
    if not clear:
        return {}
    negative = {t for t, label in clear.items() if label < 0}
    correct = sum((t in alerted) == (t in negative) for t in clear)
    on_clear = alerted & set(clear)
    return {
        "sentiment_accuracy": correct / len(clear),
        "negative_ticket_recall": len(alerted & negative) / len(negative) if negative else None,
        "negative_ticket_false_share": len(on_clear - negative) / len(on_clear)
        if on_clear else None,
        "clear_cut_tickets": float(len(clear)),
    }


def _recommendations(shop: Shop, cutoff: int, lists: dict[str, list[str]]
                     ) -> dict[str, float | None]:
    bought_before: dict[str, set[str]] = {}
    popularity: Counter[str] = Counter()
    for event in shop.events_until(cutoff):
        if event["type"] == "purchase":
            products = {item["product_id"] for item in event["items"]}
            bought_before.setdefault(event["customer_id"], set()).update(products)
            popularity.update(products)
    ranked = [product for product, _ in popularity.most_common()]
    hits = popular_hits = trials = 0
    for event in shop.events_after(cutoff):
        if event["type"] != "purchase":
            continue
        customer = event["customer_id"]
        before = bought_before.setdefault(customer, set())
        served = lists.get(customer, [])
        popular = [p for p in ranked if p not in before][:10]
        for product in {item["product_id"] for item in event["items"]} - before:
            trials += 1
            hits += product in served
            popular_hits += product in popular
        before.update(item["product_id"] for item in event["items"])
    category_of = {p.product_id: p.category for p in shop.catalogue.products}
    shares = [sum(category_of.get(p) == shop.truth[c].favourite_category for p in products)
              / len(products) for c, products in lists.items() if products and c in shop.truth]
    hit_rate = hits / trials if trials else None
    popular_rate = popular_hits / trials if trials else None
    return {
        "reco_hit_rate": hit_rate,
        "reco_popularity_hit_rate": popular_rate,
        "reco_lift": hit_rate / popular_rate if hit_rate is not None and popular_rate
        else None,
        "reco_favourite_category_share": float(np.mean(shares)) if shares else None,
        "reco_trials": float(trials),
    }


def finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)
