"""The Redis key layout: one hash tag per customer, prefixed by tenant (cluster-safe).

Every key of one customer shares the hash tag ``{tenant/customer}``, so one Lua script can
update all of them atomically on a Redis Cluster too. Global keys (progress, watermarks,
metrics, rankings) never take part in a per-customer script.

>>> keys = CustomerKeys("shop1", "c42")
>>> keys.profile
'crm:{shop1/c42}:profile'
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "crm"

#: The suffixes of every per-customer key, in the order the Lua scripts expect them.
CUSTOMER_KEY_SUFFIXES = (
    "profile",  # hash: counters, timestamps, scores
    "events",  # zset: seen event ids by event time (idempotency)
    "sessions",  # set: distinct session ids
    "categories",  # zset: forward-decayed category weights
    "recent",  # zset: recent products by last event time
    "tickets",  # hash: ticket id -> "event_ms|event_id|status"
    "bought",  # set: products ever bought
    "orders",  # zset: "order_id|total_cents" by event time, the last few orders
    "days",  # set: the days (UTC, days since the epoch) with any activity
    "merged",  # set: anonymous ids merged into this customer
    "erased",  # string with TTL: tombstone of an erased customer
    "recos",  # string: the cached recommendation list (JSON)
    "alerts",  # string: alert rule state (streaks, cooldowns, open cart), see rule_state.py
    "triage",  # hash: ticket id -> JSON of its triage (category, urgency, sentiment), tickets.py
    "alias",  # string, a visitor's only: the customer it is merged into (see alias_key)
)


@dataclass(frozen=True)
class CustomerKeys:
    tenant: str
    customer_id: str

    @property
    def tag(self) -> str:
        return f"{{{self.tenant}/{self.customer_id}}}"

    def key(self, suffix: str) -> str:
        return f"{PREFIX}:{self.tag}:{suffix}"

    @property
    def profile(self) -> str:
        return self.key("profile")

    @property
    def erased(self) -> str:
        return self.key("erased")

    @property
    def recos(self) -> str:
        return self.key("recos")

    def all(self) -> list[str]:
        return [self.key(suffix) for suffix in CUSTOMER_KEY_SUFFIXES]


def anonymous_profile_id(anonymous_id: str) -> str:
    """The profile id of an anonymous visitor (also the Kafka key of its events)."""
    return f"anon:{anonymous_id}"


def alias_key(tenant: str, anonymous_id: str) -> str:
    """Where a stitched visitor points at its customer; in the visitor's own slot."""
    return f"{PREFIX}:{{{tenant}/{anonymous_profile_id(anonymous_id)}}}:alias"


def progress_key(topic: str, partition: int) -> str:
    return f"{PREFIX}:progress:{{{topic}/{partition}}}"


def started_key(topic: str, partition: int) -> str:
    """The last offset of the partition that a batch sent to Redis to apply (see
    :class:`feature_store.store.Progress`)."""
    return f"{PREFIX}:started:{{{topic}/{partition}}}"


def watermark_key(topic: str, partition: int) -> str:
    return f"{PREFIX}:watermark:{{{topic}/{partition}}}"


def customers_key(tenant: str) -> str:
    """Every customer of a tenant, scored by last event time (for listing and benchmarks)."""
    return f"{PREFIX}:tenant:{{{tenant}}}:customers"


def ranking_key(tenant: str, score: str) -> str:
    """A ranked list of customers by one score (e.g. churn probability), per tenant."""
    return f"{PREFIX}:rank:{{{tenant}}}:{score}"


def scoring_index_key(tenant: str, partition: int) -> str:
    """The customers whose events arrive on one input partition, scored by the event time
    their scores were last computed at: the worker owning the partition re-scores the
    oldest first as the watermark moves on (one key per partition: it moves with the
    partition, and spreads a big tenant over the cluster)."""
    return f"{PREFIX}:scoring:{{{tenant}/p{partition}}}"


def segment_members_key(tenant: str, segment: int) -> str:
    """The customers of one segment: a set, so sizes stay exact under redelivery and races."""
    return f"{segments_key(tenant)}:members:{segment}"


def ticket_owner_key(tenant: str, ticket_id: str) -> str:
    """The profile a ticket belongs to (``GET /v1/tickets/{id}`` finds it here)."""
    return f"{PREFIX}:ticket:{{{tenant}/{ticket_id}}}"


def forecast_key(tenant: str) -> str:
    """Hash: worker name -> JSON of the revenue forecasts of its share of the tenant's
    purchases (see :mod:`feature_store.forecasts`)."""
    return f"{PREFIX}:forecast:{{{tenant}}}"


def erasure_receipt_key(receipt_id: str) -> str:
    return f"{PREFIX}:erasure:{receipt_id}"


METRICS_KEY = f"{PREFIX}:metrics:events_processed"
#: Set of every tenant the workers have seen events of.
TENANTS_KEY = f"{PREFIX}:tenants"

#: Capped stream of every alert (field ``alert``: the JSON record; ``tenant``, ``kind``).
ALERTS_STREAM_KEY = f"{PREFIX}:alerts:stream"
#: Hash: alert kind -> alerts suppressed because the customer declined marketing.
SUPPRESSED_KEY = f"{PREFIX}:metrics:alerts_suppressed"
#: Hash: alert id -> JSON of the alerts no redelivered event fires again (a model's drift),
#: from just before their publish until the feed has them (see ``feature_store.feed``).
UNSENT_ALERTS_KEY = f"{PREFIX}:alerts:unsent"
#: Hash: model -> event time (ms) of its last drift alert, saved with the alert: the drift
#: rule's cooldown, which the next worker takes up (see ``feature_store.feed``).
DRIFT_ALERTED_KEY = f"{PREFIX}:alerts:drift_alerted_at"


def alert_feed_marker_key(alert_id: str) -> str:
    """That an alert id is in the feed already (its hash tag is the feed stream's name, so a
    script may touch both)."""
    return f"{{{ALERTS_STREAM_KEY}}}:sent:{alert_id}"


def cart_timers_key(topic: str, partition: int) -> str:
    """The open carts of a clicks partition: a zset of ``[tenant, customer, event id]`` JSON
    members scored by their deadline (event time, ms)."""
    return f"{PREFIX}:alerts:carts:{{{topic}/{partition}}}"


def alert_state_key(tenant: str, customer_id: str) -> str:
    return CustomerKeys(tenant, customer_id).key("alerts")
#: Hash: model name -> JSON {name, version, example_count, metrics, updated_at}.
MODELS_KEY = f"{PREFIX}:models"
#: Capped stream of model metric snapshots over time (for the dashboard's charts).
MODELS_HISTORY_KEY = f"{PREFIX}:models:history"
#: Capped stream of throughput samples {at, events, lag} written by workers.
THROUGHPUT_KEY = f"{PREFIX}:throughput"


def segments_key(tenant: str) -> str:
    """Hash: segment number -> JSON {segment, label, size, centroid}."""
    return f"{PREFIX}:segments:{{{tenant}}}"


def segments_owner_key(tenant: str) -> str:
    """The worker that fits the tenant's segments (a lease, renewed while it lives)."""
    return f"{segments_key(tenant)}:owner"


def segments_fit_key(tenant: str) -> str:
    """JSON of the tenant's segments as their owner fitted them, for the other workers (same
    hash tag as the owner's lease: one script checks the lease and writes the fit)."""
    return f"{segments_key(tenant)}:fit"


def api_key_key(key_hash: str) -> str:
    """Hash: one API key (by its SHA-256): tenant, scopes, name, created_at."""
    return f"{PREFIX}:apikey:{key_hash}"
