"""One typed settings object per deployable, read from ``CRM_*`` environment variables.

>>> settings = Settings(kafka_bootstrap="k:9092", partitions=3)
>>> settings.kafka_bootstrap, settings.partitions, settings.redis_url
('k:9092', 3, 'redis://127.0.0.1:6379/0')
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a worker, the API or a CLI command needs to find Kafka and Redis.

    SASL/TLS options pass straight through to both Kafka clients (confluent-kafka for
    producing and admin, aiokafka inside Faust for consuming). Redis TLS and passwords go in
    the URL (``rediss://:password@host:6380/0``).
    """

    model_config = SettingsConfigDict(env_prefix="CRM_", frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prepended to every topic name, e.g. 'staging.' (tests use one per test).",
    )
    partitions: int = Field(default=6, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = Field(
        default=False,
        description="CRM_REDIS_URL names any node of a Redis Cluster: every deployable uses "
        "redis-py's cluster client (feature_store.client.connect).")
    redis_wait_replicas: int = Field(
        default=0, ge=0, le=5,
        description="Replicas each master must have acknowledged a batch's feature updates "
        "on (WAIT, up to 100 ms) before the batch goes on, so a failover to a replica loses "
        "none of them. 1 on a Redis with replicas; 0: no WAIT.")

    # Worker
    app_id: str = "crm-processor"
    session_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Consumer group session timeout; the embedded broker waits half of it on join.",
    )
    batch_max_events: int = Field(
        default=2000, ge=1,
        description="The most events a micro-batch takes. A batch takes what has arrived, so "
        "at live rates batches stay small; draining a backlog, larger batches featurize, score "
        "and write each customer once for more of their events (load_tests/results/"
        "THROUGHPUT.md: 2,000 drained about a quarter faster than 500, with the same alert "
        "latency at 2,000 events/s).")
    batch_max_wait_ms: float = Field(default=5.0, gt=0)
    fetch_max_wait_ms: int = Field(
        default=25,
        ge=1,
        description="Longest a worker's fetch waits at the broker for new data. Apache Kafka "
        "answers sooner once it has fetch_min_bytes; the embedded broker holds a fetch until "
        "this passes, so it bounds the latency there (Faust's built-in is 1,500 ms).",
    )
    fetch_min_bytes: int = Field(
        default=32 * 1024,
        ge=1,
        description="Bytes Apache Kafka gathers before it answers a worker's fetch (or the "
        "fetch wait passes). More than 1 makes fewer, bigger fetches and batches.",
    )
    redis_deadline_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest one batch, erasure or timer of a worker may take (mostly waiting "
        "on Redis) before it fails. One deadline per batch instead of a socket timeout per "
        "Redis reply, which doubled the client's CPU per command.",
    )
    allowed_lateness_s: float = Field(default=600.0, ge=0)
    dedupe_ids_per_customer: int = Field(default=10_000, ge=100)
    erasure_block_days: float = Field(default=30.0, ge=0)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    worker_metrics_port: int | None = None
    checkpoint_dir: Path = Path(".crm/checkpoints")
    checkpoint_interval_s: float = Field(default=30.0, gt=0)
    alerts_config: Path | None = None
    churn_horizon_days: float = Field(
        default=30.0, gt=0, description="No activity within this many days = churned.")
    churn_min_examples: int = Field(
        default=200, ge=1, description="Resolved churn labels (20 of each kind at least) "
        "before churn probabilities are served; until then they are null, `warming_up`.")
    worker_name: str | None = Field(
        default=None, description="Names this worker's checkpoints; the hostname if unset.")
    telemetry_interval_s: float = Field(default=5.0, gt=0)
    rescore_interval_s: float = Field(
        default=0.5, gt=0, description="How often the silence sweep re-scores a slice of "
        "the worker's customers at the watermark (each within 60 s).")
    recommender_process: bool = Field(
        default=True,
        description="Learn and list recommendations in a low-priority process beside each "
        "worker, off the alerts' path (see agents.recommending). Off, the worker's event loop "
        "does it and checkpoints the recommender with its other models.")
    recommender_nice: int = Field(
        default=10, ge=0, le=19, description="How much lower the recommender process's CPU "
        "priority is than its worker's (os.nice).")
    recommender_max_backlog: int = Field(
        default=50_000, ge=0, description="Interactions and lists the recommender process "
        "may fall behind before its worker sheds new ones (crm_worker_recommender_shed_total).")

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    log_level: str = "INFO"

    def to_env(self) -> dict[str, str]:
        """The ``CRM_*`` environment that reproduces these settings in a child process."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"CRM_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """The full name of one of the system's topics (see :mod:`schemas.topics`)."""
        return f"{self.topic_prefix}{name}"


def kafka_client_config(settings: Settings) -> dict[str, str | int | float | bool]:
    """librdkafka (confluent-kafka) options for the configured cluster, security included."""
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        config["sasl.password"] = password.get_secret_value() if password else ""
    if settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        config["ssl.certificate.location"] = str(settings.kafka_ssl_certfile)
    if settings.kafka_ssl_keyfile:
        config["ssl.key.location"] = str(settings.kafka_ssl_keyfile)
    return config
