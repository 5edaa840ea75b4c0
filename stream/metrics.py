"""Prometheus metrics a worker exposes itself (the API also re-exports the Redis counters)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PROCESSED = Counter(
    "crm_worker_events_processed",
    "Input messages handled by this worker, by topic and outcome",
    ["topic", "outcome"],
)
BATCH_SECONDS = Histogram(
    "crm_worker_batch_seconds",
    "Time to process one micro-batch of input events",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_STEP_SECONDS = Histogram(
    "crm_worker_batch_step_seconds",
    "Time one micro-batch spent in each step, in order: decode (and dead letters acknowledged "
    "by Kafka), apply (features, stitching, the customers read back), models (learn and "
    "score), rules (alert rules, cart timers), publish (alerts acknowledged by Kafka), commit "
    "(scores, rule state, feed, progress). A step that waits on Redis or Kafka includes their "
    "wait for a core: on a busy host most of a slow batch",
    ["step"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
#: A batch's steps, in order (the values of ``BATCH_STEP_SECONDS``'s ``step`` label).
BATCH_STEP_NAMES = ("decode", "apply", "models", "rules", "publish", "commit")
#: The steps' timers, bound once (a label lookup per batch and step is wasted work).
BATCH_STEPS = {step: BATCH_STEP_SECONDS.labels(step=step) for step in BATCH_STEP_NAMES}
EVENT_DELAY_SECONDS = Histogram(
    "crm_worker_event_delay_seconds",
    "From an input message's Kafka timestamp to the start of its processing",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECOMMENDER_SHED = Counter(
    "crm_worker_recommender_shed",
    "Interactions and lists the recommender process did not get, as it was too far behind",
)
REDIS_WAITS = Counter(
    "crm_worker_redis_waits",
    "Round trips to Redis that failed (connection refused, reset or lost, LOADING, no answer "
    "within CRM_REDIS_DEADLINE_S): by task, each a batch or erasure retried or a timer tick "
    "skipped",
    ["task"],
)
BATCH_ERRORS = Counter(
    "crm_worker_batch_errors",
    "Batches that failed for another reason than Redis being away (the broker not taking "
    "alerts or dead letters, a bug): each retried, never skipped, by the error's type",
    ["error"],
)
