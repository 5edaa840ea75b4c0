"""Part (a): the simulated shop through the real pipeline, scored against its hidden truth.

The shop's events go through the producer SDK into Kafka; ``crm worker`` builds the features
in Redis and teaches its models. Once it has processed everything it is stopped with SIGTERM
(so it writes its final checkpoint) and the run is scored:

* **segments**: the ``segment`` the worker wrote into each profile against the latent
  segment (adjusted Rand index); also the final model's assignment of every customer at the
  end of the run;
* **churn**: every customer scored by the final checkpoint at one common time, the final
  watermark (``churn.predict(churn.featurize(profile, now))``), against whether the truth
  says they churned (ROC-AUC), plus the model's own progressive metrics on delayed labels;
* **recommendations**: the recommender's progressive hit-rate@10 on every purchase, against
  the decayed-popularity baseline scored on the same purchases.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from load_tests.quality.stack import LocalStack, Message, PipelineRun
from online_models import ModelBundle, Recommender, behaviour_vector
from simulator import TOPIC_BY_TYPE, ShopSimulator
from simulator.population import SEGMENTS

log = logging.getLogger(__name__)

#: A fixed start in the past, so every run replays the same shop (events may not be in the
#: future) and the period ends long before today.
START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimulatedConfig:
    customers: int = 1500
    days: float = 120.0
    seed: int = 11
    catalogue_size: int = 2000
    partitions: int = 3
    #: How many events the producer may run ahead of the worker (see ``PipelineRun.produce``).
    max_backlog: int = 1000

    @classmethod
    def quick(cls) -> SimulatedConfig:
        return cls(customers=300, days=75.0, catalogue_size=500, partitions=2)


@dataclass
class SimulatedResult:
    config: SimulatedConfig
    events: int
    customers_scored: int
    seconds_producing: float
    seconds_processing: float
    now_ms: int
    # segments
    ari_live: float
    ari_final: float
    #: Reference: batch k-means (sklearn, same k, 10 restarts) on the final behaviour vectors.
    ari_batch_kmeans: float
    latent_segments: list[int]
    live_segments: list[int]
    final_segments: list[int]
    segment_labels: dict[int, str]
    # churn
    churned: list[int]
    churn_scores: list[float]
    churn_auc: float
    churn_online: dict[str, Any]
    # recommendations
    reco: dict[str, Any]
    #: Diagnostic: the same Recommender fed the same events strictly in event-time order.
    reco_in_order: dict[str, Any]
    worker_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def hit_rate_ratio(self) -> float | None:
        ours, baseline = self.reco.get("hit_rate_at_10"), self.reco.get(
            "popularity_hit_rate_at_10")
        return ours / baseline if ours is not None and baseline else None

    @property
    def latent_names(self) -> list[str]:
        return [segment.name for segment in SEGMENTS]


def _messages(simulator: ShopSimulator, run: PipelineRun) -> Iterator[Message]:
    topics = {kind: run.settings.topic(name) for kind, name in TOPIC_BY_TYPE.items()}
    for event in simulator.events():
        key = event.get("customer_id") or "anon:" + event["anonymous_id"]
        yield topics[event["type"]], key, orjson.dumps(event)


def count_events(simulator: ShopSimulator) -> int:
    return sum(1 for _ in simulator.events())


def run_simulated(stack: LocalStack, config: SimulatedConfig, *,
                  progress: bool = True) -> SimulatedResult:
    """Replay the simulated shop through ``crm worker`` and score what it learnt."""
    simulator = ShopSimulator(customers=config.customers, seed=config.seed, start=START,
                              days=config.days, catalogue_size=config.catalogue_size)
    total = count_events(simulator)
    overrides = {"partitions": config.partitions}
    run = PipelineRun(stack=stack, name="sim", overrides=overrides, progress=progress)
    run.start()
    try:
        started = time.monotonic()
        run.produce(_messages(simulator, run), total=total, desc="simulated shop → Kafka",
                    max_backlog=config.max_backlog)
        producing = time.monotonic() - started
        run.wait_until_processed()
        processing = time.monotonic() - started
    finally:
        run.stop_worker()
    bundle = run.final_bundle()
    truth = simulator.ground_truth()
    ids = [record["customer_id"] for record in truth]
    inputs = run.profiles(ids)
    live = run.profile_fields(ids, ["segment"])
    now_ms = bundle.churn.labeler.watermark_ms or int(simulator.end.timestamp() * 1000)
    scored = [record for record in truth if record["customer_id"] in inputs]
    latent, live_segments, final_segments, churned, scores = [], [], [], [], []
    vectors = []
    for record in scored:
        profile = inputs[record["customer_id"]].profile
        latent.append(int(record["segment"]))
        live_segments.append(int(live.get(record["customer_id"], {}).get("segment", -1)))
        vector = behaviour_vector(profile)
        vectors.append(vector)
        segment, _ = bundle.segments.assign("default", vector)
        final_segments.append(-1 if segment is None else segment)
        churned.append(int(record["churn_at"] is not None))
        scores.append(bundle.churn.predict(bundle.churn.featurize(profile, now_ms))[0])
    return SimulatedResult(
        config=config, events=total, customers_scored=len(scored),
        seconds_producing=producing, seconds_processing=processing, now_ms=now_ms,
        ari_live=float(adjusted_rand_score(latent, live_segments)),
        ari_final=float(adjusted_rand_score(latent, final_segments)),
        ari_batch_kmeans=_batch_kmeans_ari(vectors, latent, len(SEGMENTS)),
        latent_segments=latent, live_segments=live_segments, final_segments=final_segments,
        segment_labels=bundle.segments.of("default").labels(),
        churned=churned, churn_scores=scores, churn_auc=_auc(churned, scores),
        churn_online=_churn_online(bundle), reco=dict(bundle.recommender.metrics_dict()),
        reco_in_order=in_order_recommendations(simulator, progress=progress),
        worker_settings=overrides,
    )


def in_order_recommendations(simulator: ShopSimulator, *, progress: bool = True,
                             recent_size: int = 20) -> dict[str, Any]:
    """Progressive hit-rate@10 of a fresh :class:`Recommender` fed strictly in event order.

    A diagnostic beside the pipeline's figure, not a replacement: the worker runs one agent
    per topic, so in a replay of months in minutes a purchase is often learnt before the
    clicks of its own session (hours of event time apart); live, they are milliseconds
    apart. Here each customer's recent products and bought set are kept as the feature store
    keeps them (visitors stitched at login) and the scorer's calls are made in order.
    """
    from tqdm import tqdm

    from feature_store.keys import anonymous_profile_id

    recommender = Recommender()
    recent: dict[str, list[str]] = {}
    bought: dict[str, set[str]] = {}
    owner: dict[str, str] = {}
    kinds = {"product_view": "view", "add_to_cart": "cart"}
    for event in tqdm(simulator.events(), desc="recommender in event order", unit="ev",
                      unit_scale=True, mininterval=1.0, disable=not progress):
        anonymous = event.get("anonymous_id")
        customer = event.get("customer_id")
        if customer and anonymous:
            owner.setdefault(anonymous, customer)
        profile = customer or owner.get(anonymous, anonymous_profile_id(anonymous))
        at_ms = _epoch_ms(event["occurred_at"])
        if event["type"] == "purchase":
            products = [item["product_id"] for item in event["items"]]
            before = set(bought.get(profile, ()))
            recent[profile] = _push_recent(recent.get(profile, []), products, recent_size)
            recommender.learn_order(profile, products, at_ms, recent=recent[profile],
                                    exclude=before)
            bought.setdefault(profile, set()).update(products)
        elif event["type"] == "click" and event["kind"] in kinds and event.get("product_id"):
            product = event["product_id"]
            recent[profile] = _push_recent(recent.get(profile, []), [product], recent_size)
            recommender.learn(profile, product, kinds[event["kind"]], at_ms,
                              recent=recent[profile])
    return dict(recommender.metrics_dict())


def _push_recent(recent: list[str], products: list[str], size: int) -> list[str]:
    return [*products, *(p for p in recent if p not in products)][:size]


def _epoch_ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


def _batch_kmeans_ari(vectors: list[dict[str, float]], latent: list[int],
                      n_clusters: int) -> float:
    """What offline k-means reaches on the same vectors: separates the representation's limit
    from the online learner's."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    if len(vectors) <= n_clusters:
        return float("nan")
    names = sorted({name for vector in vectors for name in vector})
    raw = np.array([[vector.get(name, np.nan) for name in names] for vector in vectors])
    raw = np.where(np.isnan(raw), np.nanmedian(raw, axis=0), raw)  # as the segmenter fills
    matrix = StandardScaler().fit_transform(raw)
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=0).fit_predict(matrix)
    return float(adjusted_rand_score(latent, labels))


def _auc(labels: list[int], scores: list[float]) -> float:
    if len(set(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(np.asarray(labels), np.asarray(scores)))


def _churn_online(bundle: ModelBundle) -> dict[str, Any]:
    metrics = bundle.churn.metrics_dict()
    return {key: metrics[key] for key in ("examples", "roc_auc", "log_loss", "calibration")}
