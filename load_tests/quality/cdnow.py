"""The CDNOW purchase history replayed in event time through the real pipeline.

CDNOW (shipped inside the ``lifetimes`` wheel, read from there, never copied): 23,570
customers who first bought in the first quarter of 1997, every purchase until June 1998.
As in Fader, Hardie and Lee (2005) the first 39 weeks are the calibration period and the
next 39 weeks the holdout. Each calibration transaction becomes one ``purchase`` event
(its number of CDs as the quantity, the dollar value as the total, at noon UTC of the date)
sent through the producer SDK; ``crm worker`` learns from them in event time. At the end of
calibration, once the silence sweep has scored every customer at the watermark, the churn
probability and CLV served in each Redis profile are compared on the holdout with BG/NBD
(and BG/NBD x Gamma-Gamma for spend) fitted by ``lifetimes`` on the same calibration data in
the same run, beside the same customers scored by the worker's final checkpoint (the model's
own view, which the served one must match).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from load_tests.quality.served import ServedApi, ServedProfile
from load_tests.quality.stack import LocalStack, Message, PipelineRun
from schemas.topics import PURCHASES

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
CALIBRATION_END = pd.Timestamp("1997-09-30")  # the 273rd day: 39 weeks from 1997-01-01
HOLDOUT_END = pd.Timestamp("1998-06-30")  # 39 more weeks
HOLDOUT_DAYS = (HOLDOUT_END - CALIBRATION_END).days
#: Event time at the end of the calibration period (midnight after its last day).
CALIBRATION_END_MS = int((CALIBRATION_END + pd.Timedelta(days=1) - pd.Timestamp("1970-01-01"))
                         // pd.Timedelta(milliseconds=1))


@dataclass(frozen=True)
class CdnowConfig:
    #: Customers to keep (``None``: all 23,570), drawn at random with ``seed``.
    sample: int | None = None
    seed: int = 7
    partitions: int = 3
    churn_horizon_days: float = 90.0

    @classmethod
    def quick(cls) -> CdnowConfig:
        return cls(sample=2000, partitions=2)


@dataclass
class CdnowResult:
    config: CdnowConfig
    customers: int
    calibration_events: int
    seconds_processing: float
    no_purchase: list[int]
    holdout_spend: list[float]
    # scores per customer, aligned with the lists above
    ours_churn: list[float]
    #: As served: the churn probability in each customer's Redis profile.
    ours_churn_live: list[float]
    #: Seconds from the end of processing until every served score was at the watermark.
    sweep_lag_s: float
    bgnbd_expected: list[float]
    recency_days: list[float]
    ours_clv: list[float]
    ours_clv_live: list[float]
    bgnbd_gg_clv: list[float]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    online: dict[str, Any] = field(default_factory=dict)
    worker_settings: dict[str, Any] = field(default_factory=dict)
    #: As served: the segment label in each customer's Redis profile.
    segment_labels: list[str] = field(default_factory=list)
    #: Days with a purchase in the calibration period (the profile's active days).
    calibration_days: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ServedSegment:
    """A segment served on CDNOW and what its customers did next (the holdout)."""

    label: str
    customers: int
    #: Share of its customers who bought on one day only in the calibration period.
    one_day: float
    #: Share of its customers who bought again in the holdout, and their mean spend there.
    bought_again: float
    holdout_spend: float


def served_segments(result: CdnowResult) -> list[ServedSegment]:
    """The served segments, those whose customers spent most in the holdout first: do the
    labels a marketer reads tell the customers' futures apart?"""
    if not result.segment_labels:
        return []
    frame = pd.DataFrame({"label": result.segment_labels, "days": result.calibration_days,
                          "again": 1 - np.asarray(result.no_purchase),
                          "spend": result.holdout_spend})
    rows = [ServedSegment(str(label), len(group), float((group["days"] <= 1).mean()),
                          float(group["again"].mean()), float(group["spend"].mean()))
            for label, group in frame.groupby("label")]
    return sorted(rows, key=lambda row: -row.holdout_spend)


def dataset_path() -> Path:
    import lifetimes

    return Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"


def load_transactions(sample: int | None = None, seed: int = 7) -> pd.DataFrame:
    """CDNOW's transactions: ``customer_id``, ``date``, ``number_of_cds``, ``dollar_value``.

    A ``sample`` keeps that many customers (all their transactions), drawn with ``seed``.
    """
    frame = pd.read_csv(dataset_path(), sep=r"\s+", dtype={"customer_id": str, "date": str})
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    frame["transaction"] = np.arange(len(frame))
    if sample is not None:
        customers = frame["customer_id"].drop_duplicates()
        kept = customers.sample(n=min(sample, len(customers)), random_state=seed)
        frame = frame[frame["customer_id"].isin(set(kept))]
    return frame.reset_index(drop=True)


def purchase_event(row: Any) -> dict[str, Any]:
    """One CDNOW transaction as a ``purchase`` event, at noon UTC of its date.

    >>> import pandas as pd
    >>> row = pd.Series({"customer_id": "00042", "date": pd.Timestamp("1997-03-05"),
    ...                  "number_of_cds": 3, "dollar_value": 44.97, "transaction": 9})
    >>> event = purchase_event(row)
    >>> event["occurred_at"], event["total"], event["items"][0]["quantity"]
    ('1997-03-05T12:00:00Z', 44.97, 3)
    >>> abs(event["items"][0]["unit_price"] * 3 - event["total"]) < 1e-9
    True
    """
    quantity = int(row["number_of_cds"])
    total = round(float(row["dollar_value"]), 2)
    return {
        "event_id": f"cdnow-{row['transaction']}",
        "customer_id": row["customer_id"],
        "type": "purchase",
        "occurred_at": f"{row['date']:%Y-%m-%d}T12:00:00Z",
        "order_id": f"cdnow-order-{row['transaction']}",
        "items": [{"product_id": "cdnow-cds", "quantity": quantity,
                   "unit_price": total / quantity, "category": "music"}],
        "total": total,
        "currency": "USD",
    }


def _messages(calibration: pd.DataFrame, run: PipelineRun) -> Iterator[Message]:
    topic = run.settings.topic(PURCHASES)
    for row in calibration.sort_values(["date", "transaction"]).to_dict("records"):
        yield topic, row["customer_id"], orjson.dumps(purchase_event(row))


def bgnbd_baseline(frame: pd.DataFrame, customers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """BG/NBD's expected holdout purchases and BG/NBD x Gamma-Gamma's expected holdout spend.

    Both fitted with ``lifetimes`` on the calibration period only (daily resolution).
    """
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import calibration_and_holdout_data

    summary = calibration_and_holdout_data(
        frame, "customer_id", "date", calibration_period_end=CALIBRATION_END,
        observation_period_end=HOLDOUT_END, freq="D", monetary_value_col="dollar_value",
    ).reindex(customers)
    bgnbd = BetaGeoFitter(penalizer_coef=0.0).fit(
        summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    expected = bgnbd.conditional_expected_number_of_purchases_up_to_time(
        HOLDOUT_DAYS, summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    repeat = summary[(summary["frequency_cal"] > 0) & (summary["monetary_value_cal"] > 0)]
    gamma_gamma = GammaGammaFitter(penalizer_coef=0.0).fit(
        repeat["frequency_cal"], repeat["monetary_value_cal"])
    order_value = gamma_gamma.conditional_expected_average_profit(
        summary["frequency_cal"], summary["monetary_value_cal"])
    return np.asarray(expected, dtype=float), np.asarray(expected * order_value, dtype=float)


def run_cdnow(stack: LocalStack, config: CdnowConfig, *, progress: bool = True) -> CdnowResult:
    """Replay the calibration period through ``crm worker``; score it and BG/NBD on the holdout."""
    frame = load_transactions(config.sample, config.seed)
    calibration = frame[frame["date"] <= CALIBRATION_END]
    holdout = frame[(frame["date"] > CALIBRATION_END) & (frame["date"] <= HOLDOUT_END)]
    customers = sorted(frame["customer_id"].unique())
    overrides = {
        "partitions": config.partitions,
        "churn_horizon_days": config.churn_horizon_days,
        # Time only advances with events: no lateness lets the last day's labels resolve.
        "allowed_lateness_s": 0.0,
    }
    run = PipelineRun(stack=stack, name="cdnow", overrides=overrides, progress=progress)
    run.start()
    try:
        started = time.monotonic()
        sent = run.produce(_messages(calibration, run), total=len(calibration),
                           desc="CDNOW calibration → Kafka")
        run.wait_until_processed()
        processing = time.monotonic() - started
        watermark_ms = run.model_watermark()
        sweep_lag_s = run.wait_until_scored(customers, watermark_ms)
        log.info("reading the %d customers' scores from the API", len(customers))
        with ServedApi(run.settings, log_path=run.work_dir / "api.log") as api:
            live = api.profiles(customers)
    finally:
        run.stop_worker()
    bundle = run.final_bundle()
    inputs = run.profiles(customers)
    missing = [c for c in customers if c not in inputs]
    if missing:
        raise RuntimeError(f"{len(missing)} CDNOW customers have no profile, e.g. {missing[:3]}")

    holdout_counts = holdout.groupby("customer_id").size().reindex(customers, fill_value=0)
    holdout_spend = holdout.groupby("customer_id")["dollar_value"].sum().reindex(
        customers, fill_value=0.0)
    no_purchase = (holdout_counts == 0).astype(int).to_numpy()
    scale = HOLDOUT_DAYS / bundle.clv.window_days
    churn, churn_live, clv, clv_live, recency = [], [], [], [], []
    labels: list[str] = []
    days: list[int] = []
    for customer in customers:
        profile = inputs[customer].profile
        served = live.get(customer, UNSERVED)
        labels.append(served.segment_label or "(none)")
        days.append(int(profile.get("active_days") or 0))
        churn.append(bundle.churn.predict(bundle.churn.featurize(profile, watermark_ms))[0])
        churn_live.append(_or_nan(served.churn_probability))
        clv.append(bundle.clv.predict(profile, watermark_ms).clv * scale)
        clv_live.append(_or_nan(served.clv) * scale)
        recency.append((CALIBRATION_END_MS - (profile["last_order_at"] or 0)) / DAY_MS)
    expected, bgnbd_clv = bgnbd_baseline(frame, customers)
    spend = holdout_spend.to_numpy(dtype=float)
    result = CdnowResult(
        config=config, customers=len(customers), calibration_events=sent,
        seconds_processing=processing, no_purchase=no_purchase.tolist(),
        holdout_spend=spend.tolist(), ours_churn=churn, ours_churn_live=churn_live,
        sweep_lag_s=sweep_lag_s, bgnbd_expected=expected.tolist(),
        recency_days=recency, ours_clv=clv, ours_clv_live=clv_live,
        bgnbd_gg_clv=bgnbd_clv.tolist(), worker_settings=overrides,
        segment_labels=labels, calibration_days=days,
        online={"churn": _pick(bundle.churn.metrics_dict(), ("examples", "roc_auc",
                                                              "log_loss")),
                "clv": _pick(bundle.clv.metrics_dict(), ("examples", "purchases_mae",
                                                          "spend_mae", "mean_order_value"))},
    )
    result.metrics = score(result)
    return result


def score(result: CdnowResult) -> dict[str, dict[str, float]]:
    """ROC-AUC at "no purchase in the holdout"; MAE and Spearman of spend predictions."""
    labels = np.asarray(result.no_purchase)
    spend = np.asarray(result.holdout_spend)

    def auc(scores: list[float] | np.ndarray) -> float:
        return float(roc_auc_score(labels, np.asarray(scores))) if len(set(labels)) > 1 else \
            float("nan")

    def spend_metrics(predicted: list[float]) -> dict[str, float]:
        values = np.nan_to_num(np.asarray(predicted, dtype=float))
        return {"mae": float(np.abs(values - spend).mean()),
                "spearman": float(spearmanr(values, spend).statistic)}

    return {
        "churn_auc": {"ours": auc(result.ours_churn),
                      "ours_live": auc(np.nan_to_num(np.asarray(result.ours_churn_live))),
                      "bgnbd": auc(-np.asarray(result.bgnbd_expected)),
                      "recency": auc(result.recency_days)},
        "clv_ours": spend_metrics(result.ours_clv),
        "clv_ours_live": spend_metrics(result.ours_clv_live),
        "clv_bgnbd_gg": spend_metrics(result.bgnbd_gg_clv),
    }


#: A customer the API has no profile of (every score missing).
UNSERVED = ServedProfile(customer_id="", churn_probability=None, churn_status=None, clv=None,
                         segment=None, segment_label=None, scored_at_ms=None,
                         last_seen_ms=None, sentiment=None)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _pick(metrics: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: metrics.get(key) for key in keys}
