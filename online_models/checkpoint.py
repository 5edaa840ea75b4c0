"""Checkpoints: all global models of one worker, versioned, as bytes.

The byte layout is ``MAGIC``, a 4-byte big-endian header length, a JSON header (format
version, creation time, model versions, example counts, BLAKE2b of the payload) and a pickle
of the :class:`ModelBundle`, or of one model checkpointed apart (:func:`encode_checkpoint`).
The header can be read without unpickling anything (:func:`read_header`). Unpickling runs
code: load only checkpoints this system wrote.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from online_models.anomaly import PurchaseAnomaly
from online_models.churn import ChurnModel
from online_models.clv import ClvModel
from online_models.drift import DriftMonitor
from online_models.forecast import RevenueForecaster
from online_models.recommend import Recommender
from online_models.segments import TenantSegments
from online_models.sentiment import SentimentModel
from online_models.triage import TicketTriage

__all__ = ["FORMAT_VERSION", "MAGIC", "SCORING_MODELS", "CheckpointError", "ModelBundle",
           "decode_checkpoint", "encode_checkpoint", "read_header", "scores_version"]

MAGIC = b"CRMMODELS\n"
FORMAT_VERSION = 3  # 2: activity features, per-tenant segments; 3: forecast, triage, drift

T = TypeVar("T")

#: The models a customer's served scores come from (see :func:`online_models.score_customer`).
SCORING_MODELS = ("segments", "churn", "clv")


def scores_version(model_versions: Mapping[str, str]) -> str:
    """The version a customer's scores carry: that of the models that made them, and only
    those, so a reader can tell whether stored scores are the models' current word (the
    silence sweep re-scores everyone when it changes; a sentiment lesson changes nothing).

    >>> scores_version({"segments": "segments-v2+9", "churn": "churn-v1+4", "clv": "clv-v1+2",
    ...                 "sentiment": "sentiment-v1+1"})
    'segments-v2+9,churn-v1+4,clv-v1+2'
    """
    return ",".join(model_versions[name] for name in SCORING_MODELS)


class CheckpointError(ValueError):
    """The bytes are not a checkpoint this code can read."""


@dataclass
class ModelBundle:
    """The global models of one worker, checkpointed and restored together.

    Examples
    --------
    >>> bundle = ModelBundle()
    >>> bundle.sentiment.learn("love it", csat=5)
    True
    >>> restored = ModelBundle.from_bytes(bundle.to_bytes(created_at_ms=0))
    >>> restored.version == bundle.version, restored.model_versions()["sentiment"]
    (True, 'sentiment-v1+1')
    >>> read_header(bundle.to_bytes(created_at_ms=0))["example_counts"]["sentiment"]
    1
    """

    segments: TenantSegments = field(default_factory=TenantSegments)
    churn: ChurnModel = field(default_factory=ChurnModel)
    clv: ClvModel = field(default_factory=ClvModel)
    recommender: Recommender = field(default_factory=Recommender)
    sentiment: SentimentModel = field(default_factory=SentimentModel)
    anomaly: PurchaseAnomaly = field(default_factory=PurchaseAnomaly)
    forecast: RevenueForecaster = field(default_factory=RevenueForecaster)
    triage: TicketTriage = field(default_factory=TicketTriage)
    #: ADWIN on each model's progressive error, keyed by the model's name in :meth:`models`.
    drift: DriftMonitor = field(default_factory=DriftMonitor)

    def models(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "churn": self.churn,
            "clv": self.clv,
            "recommendations": self.recommender,
            "sentiment": self.sentiment,
            "anomaly": self.anomaly,
            "forecast": self.forecast,
            "triage": self.triage,
        }

    def model_versions(self) -> dict[str, str]:
        """``model_version`` of each model; it changes whenever that model learns."""
        return {name: model.model_version for name, model in self.models().items()}

    @property
    def scores_version(self) -> str:
        """:func:`scores_version` of this bundle: what the scores it makes now carry."""
        models = self.models()
        return scores_version({name: models[name].model_version for name in SCORING_MODELS})

    def example_counts(self) -> dict[str, int]:
        return {name: model.example_count for name, model in self.models().items()}

    @property
    def version(self) -> str:
        """One string for the bundle, e.g. ``bundle-3f2a9c1d@n=12345``."""
        digest = hashlib.blake2b(
            json.dumps(self.model_versions(), sort_keys=True).encode(), digest_size=4
        ).hexdigest()
        return f"bundle-{digest}@n={sum(self.example_counts().values())}"

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Online metrics of every model that has them, plus versions, counts and the event
        time its error last rose (``drifted_at``, ``None`` if never)."""
        out: dict[str, dict[str, Any]] = {}
        for name, model in self.models().items():
            metrics_dict = getattr(model, "metrics_dict", None)
            out[name] = (
                metrics_dict()
                if metrics_dict
                else {"model_version": model.model_version, "examples": model.example_count}
            )
            out[name]["drifted_at"] = self.drift.drifted_at(name)
        return out

    def to_bytes(self, *, created_at_ms: int | None = None) -> bytes:
        return encode_checkpoint(self, version=self.version, model_versions=self.model_versions(),
                                 example_counts=self.example_counts(),
                                 created_at_ms=created_at_ms)

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelBundle:
        return decode_checkpoint(data, cls)


def encode_checkpoint(model: object, *, version: str, model_versions: dict[str, str],
                      example_counts: dict[str, int], created_at_ms: int | None = None) -> bytes:
    """A checkpoint of any picklable model: the bundle's, or one model kept apart from it
    (the recommender, which learns in a process of its own)."""
    payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format_version": FORMAT_VERSION,
        "created_at_ms": int(time.time() * 1000) if created_at_ms is None else created_at_ms,
        "version": version,
        "model_versions": model_versions,
        "example_counts": example_counts,
        "payload_blake2b": hashlib.blake2b(payload, digest_size=16).hexdigest(),
    }
    encoded = json.dumps(header, sort_keys=True).encode()
    return MAGIC + len(encoded).to_bytes(4, "big") + encoded + payload


def decode_checkpoint(data: bytes, expected: type[T]) -> T:
    """The model in ``data``, checked against its checksum and for being an ``expected``."""
    header, payload = _split(data)
    if hashlib.blake2b(payload, digest_size=16).hexdigest() != header.get("payload_blake2b"):
        raise CheckpointError("checkpoint payload does not match its checksum")
    model = pickle.loads(payload)
    if not isinstance(model, expected):
        raise CheckpointError(
            f"checkpoint holds a {type(model).__name__}, not a {expected.__name__}")
    return model


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not data.startswith(MAGIC):
        raise CheckpointError("not a model checkpoint (bad magic)")
    start = len(MAGIC) + 4
    length = int.from_bytes(data[len(MAGIC) : start], "big")
    header = json.loads(data[start : start + length])
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format {header.get('format_version')} is not {FORMAT_VERSION}"
        )
    return header, data[start + length :]


def read_header(data: bytes) -> dict[str, Any]:
    """The checkpoint's header (versions, counts, creation time) without unpickling it."""
    return _split(data)[0]
