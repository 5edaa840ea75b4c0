"""Reading what the system serves, as its users read it: the HTTP API and the alert topic.

A quality run judges the scores people act on, not a model's opinion of itself: after a replay
it waits until the worker's silence sweep has brought every customer's scores up to the
watermark and to the models as they now are (:meth:`ServedApi.wait_until_scored`), then reads
each profile, each customer's recommendations, the segments and the models' own online
metrics over HTTP (``crm api``, started here on a free port), and the alerts from the
``crm.alerts`` topic.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from load_tests.commands import create_key, run_crm
from online_models import SCORING_MODELS, scores_version
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings


@dataclass(frozen=True)
class ServedProfile:
    """The scores of one customer, as ``GET /v1/customers/{id}`` served them."""

    customer_id: str
    churn_probability: float | None
    churn_status: str | None
    clv: float | None
    segment: int | None
    segment_label: str | None
    scored_at_ms: int | None
    last_seen_ms: int | None
    sentiment: float | None
    #: The version of the models that made the scores (``scores_version``).
    model_version: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ServedProfile:
        scores, features = body.get("scores") or {}, body.get("features") or {}
        status = scores.get("churn_status") or {}
        return cls(customer_id=body["customer_id"],
                   churn_probability=scores.get("churn_probability"),
                   churn_status=status.get("status"), clv=scores.get("clv"),
                   segment=scores.get("segment"), segment_label=scores.get("segment_label"),
                   scored_at_ms=_ms(scores.get("scored_at")),
                   last_seen_ms=_ms(features.get("last_seen_at")),
                   sentiment=scores.get("sentiment"), model_version=body.get("model_version"))


def _ms(value: str | None) -> int | None:
    from datetime import datetime

    return None if value is None else round(datetime.fromisoformat(value).timestamp() * 1000)


class ServedApi:
    """``crm api`` for one quality run, with a read key of its own."""

    def __init__(self, settings: Settings, *, log_path: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            name="crm api (quality)",
            argv=[sys.executable, "-m", "crm", "api", "--port", str(self.port)],
            log_path=log_path, env={**settings.to_env(), "CRM_API_RATE_LIMIT": "0"})
        self.client: httpx.Client | None = None

    def __enter__(self) -> ServedApi:
        key = create_key(self.settings, tenant="default", scopes="read",
                         name="quality benchmark", rate_limit=0)
        self.process.start()
        self.process.wait_until(self._healthy, timeout=60, what="the API's /healthz")
        self.client = httpx.Client(base_url=self.url, timeout=30.0,
                                   headers={"Authorization": f"Bearer {key}"})
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.client is not None:
            self.client.close()
        self.process.stop(timeout=10)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _get(self, path: str, **params: Any) -> Any:
        assert self.client is not None, "use ServedApi in a with block"
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def profiles(self, customer_ids: Iterable[str]) -> dict[str, ServedProfile]:
        """The served profiles of the customers that have one."""
        assert self.client is not None
        out = {}
        for customer in customer_ids:
            response = self.client.get(f"/v1/customers/{customer}")
            if response.status_code == 404:
                continue
            response.raise_for_status()
            out[customer] = ServedProfile.from_json(response.json())
        return out

    def recommendations(self, customer_ids: Iterable[str], n: int = 10) -> dict[str, list[str]]:
        """The served lists of the customers that have a profile."""
        assert self.client is not None
        out = {}
        for customer in customer_ids:
            response = self.client.get(f"/v1/customers/{customer}/recommendations",
                                       params={"n": n})
            if response.status_code == 404:
                continue
            response.raise_for_status()
            out[customer] = [item["product_id"] for item in response.json()["recommendations"]]
        return out

    def models(self, *, published_after_ms: int = 0, timeout_s: float = 30.0
               ) -> dict[str, dict[str, Any]]:
        """Each model's version and online metrics, as published by the worker's telemetry
        after ``published_after_ms`` (wall clock): the metrics must be today's."""
        deadline = time.monotonic() + timeout_s
        while True:
            models = {model["name"]: model for model in self._get("/v1/models")["models"]}
            if all((_ms(model.get("updated_at")) or 0) > published_after_ms
                   for model in models.values()) or time.monotonic() > deadline:
                return models
            time.sleep(0.5)

    def segments(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/segments")["segments"])

    def at_risk(self, limit: int) -> list[dict[str, Any]]:
        return list(self._get("/v1/customers/at-risk", limit=limit)["customers"])

    def wait_until_scored(self, customer_ids: list[str], watermark_ms: int, *,
                          timeout_s: float = 300.0) -> float:
        """Wait until every customer's served scores are at least as new as
        ``watermark_ms`` (or as their own last activity, if later) and made by the models
        the worker holds now (their ``scores_version``, from telemetry published after this
        call began); answers the seconds it took, which is how far the served scores lagged
        behind the watermark. A customer without a profile (only ever anonymous) has nothing
        to wait for."""
        started = time.monotonic()
        began_ms = round(time.time() * 1000)
        waiting = list(customer_ids)
        while waiting:
            models = self.models(published_after_ms=began_ms, timeout_s=timeout_s)
            current = scores_version({name: str(models.get(name, {}).get("version"))
                                      for name in SCORING_MODELS})
            served = self.profiles(waiting)
            waiting = [c for c in waiting if c in served and not _fresh(served[c],
                                                                        watermark_ms, current)]
            if not waiting:
                break
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{len(waiting)} customers still scored before the "
                                   f"watermark or by older models after {timeout_s:.0f}s, "
                                   f"e.g. {[served[c] for c in waiting[:2]]} (models {current})")
            time.sleep(1.0)
        return time.monotonic() - started


def _fresh(profile: ServedProfile, watermark_ms: int, models_version: str) -> bool:
    """Scored at the watermark, or at the customer's own activity if that is later (the
    time every scoring path scores at), by the models of ``models_version``."""
    if profile.scored_at_ms is None or profile.model_version != models_version:
        return False
    return profile.scored_at_ms >= max(watermark_ms, profile.last_seen_ms or 0)


def read_alerts(settings: Settings, *, idle_s: float = 3.0) -> list[dict[str, Any]]:
    """Every alert on the run's ``crm.alerts`` topic, read by ``crm alerts tail
    --from-beginning`` until ``idle_s`` pass without a new one."""
    import orjson

    output = run_crm(["alerts", "tail", "--from-beginning", "--idle-timeout", str(idle_s)],
                     settings)
    return [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
