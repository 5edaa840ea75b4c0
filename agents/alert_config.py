"""Alert rule configuration: a YAML file whose changes take effect without a restart.

The file's path is ``Settings.alerts_config``; without one the built-in defaults apply, which
equal ``alerts.example.yaml`` at the repository root. :class:`AlertConfigWatcher` re-reads the
file when it changes (its mtime is checked at most every ``reload_interval_s`` seconds, and at
once on SIGHUP). A file that does not parse or validate keeps the previous configuration and
logs an error, so a typo never stops the alerts.

>>> config = AlertConfig.model_validate({"churn_risk": {"threshold": 0.8, "cooldown": "3d"},
...                                      "cart_abandonment": {"enabled": False}})
>>> config.churn_risk.threshold, config.churn_risk.cooldown_ms
(0.8, 259200000)
>>> config.enabled(AlertKind.CART_ABANDONMENT), config.enabled(AlertKind.CHURN_RISK)
(False, True)
>>> parse_duration_s("90m"), parse_duration_s("1.5h"), parse_duration_s(45)
(5400.0, 5400.0, 45.0)
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from schemas.records import AlertKind

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration_s(value: Any) -> float:
    """Seconds from a number (of seconds) or a string like ``"90s"``, ``"30m"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30m'")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like '90s', '30m', '6h' or '7d'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(parse_duration_s), Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    cooldown: Duration = Field(
        default=86_400.0,
        description="At most one alert per customer and kind within this much event time.",
    )

    @property
    def cooldown_ms(self) -> int:
        return int(self.cooldown * 1000)


class ChurnRiskRule(_Rule):
    threshold: Probability = 0.7
    consecutive: Annotated[int, Field(ge=1, le=1000)] = 3
    hysteresis: Probability = 0.1
    cooldown: Duration = 7 * 86_400.0

    @model_validator(mode="after")
    def _hysteresis_below_threshold(self) -> ChurnRiskRule:
        if self.hysteresis > self.threshold:
            raise ValueError("hysteresis must not exceed the threshold")
        return self


class HighValueRule(_Rule):
    percentile: Probability = 0.99
    hysteresis: Probability = 0.02
    cooldown: Duration = 30 * 86_400.0
    #: A percentile among fewer customers than this says little (a new shop, a cold start).
    min_customers: Annotated[int, Field(ge=1)] = 100


class NegativeTicketRule(_Rule):
    sentiment_below: Annotated[float, Field(ge=-1.0, le=1.0)] = -0.2
    csat_at_most: Annotated[int, Field(ge=0, le=5)] = 2
    cooldown: Duration = 6 * 3600.0


class AnomalousPurchaseRule(_Rule):
    threshold: Probability = 0.9
    cooldown: Duration = 86_400.0


class CartAbandonmentRule(_Rule):
    timeout: Duration = Field(default=30 * 60.0, gt=0,
                              description="Event time after an add-to-cart without a purchase.")
    wait_for_purchases: bool = Field(
        default=True,
        description="Fire only once the purchases partition's watermark passed the deadline "
        "too (a lagging purchase consumer cannot cause a false alert); turn off if some "
        "partitions see purchases too rarely to move their watermark.")
    cooldown: Duration = 86_400.0

    @property
    def timeout_ms(self) -> int:
        return int(self.timeout * 1000)


class SegmentChangeRule(_Rule):
    cooldown: Duration = 7 * 86_400.0


class ConsentPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suppress_when_unknown: bool = Field(
        default=False,
        description="Also suppress marketing alerts of customers who never stated consent.",
    )


#: Kinds that are marketing: suppressed for customers who declined marketing.
MARKETING_KINDS = frozenset({AlertKind.CHURN_RISK, AlertKind.HIGH_VALUE,
                             AlertKind.CART_ABANDONMENT, AlertKind.SEGMENT_CHANGE})


class AlertConfig(BaseModel):
    """Every rule's thresholds, cooldowns and switch; the defaults are ``alerts.example.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reload_interval_s: Annotated[float, Field(gt=0)] = 10.0
    consent: ConsentPolicy = ConsentPolicy()
    churn_risk: ChurnRiskRule = ChurnRiskRule()
    high_value: HighValueRule = HighValueRule()
    negative_ticket: NegativeTicketRule = NegativeTicketRule()
    anomalous_purchase: AnomalousPurchaseRule = AnomalousPurchaseRule()
    cart_abandonment: CartAbandonmentRule = CartAbandonmentRule()
    segment_change: SegmentChangeRule = SegmentChangeRule()

    def rule(self, kind: AlertKind) -> _Rule:
        rule: _Rule = getattr(self, kind.value)
        return rule

    def enabled(self, kind: AlertKind) -> bool:
        return self.rule(kind).enabled

    def cooldown_ms(self, kind: AlertKind) -> int:
        return self.rule(kind).cooldown_ms

    def suppressed_by_consent(self, kind: AlertKind, consent: bool | None) -> bool:
        """Whether a customer's consent forbids this kind of alert."""
        if kind not in MARKETING_KINDS:
            return False
        return consent is False or (consent is None and self.consent.suppress_when_unknown)


def load_config(path: Path) -> AlertConfig:
    """Read and validate one YAML file; raises ``ValueError`` saying what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read alert config {path}: {error}") from error
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"alert config {path} must be a mapping, not {type(raw).__name__}")
    try:
        return AlertConfig.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"invalid alert config {path}: {error}") from error


class AlertConfigWatcher:
    """The current :class:`AlertConfig`, re-read when the file changes or on SIGHUP.

    ``current()`` is cheap: it looks at the file's mtime at most every ``reload_interval_s``
    seconds (of the loaded config, unless ``interval_s`` overrides it), so callers can ask on
    every micro-batch. A bad file keeps the previous config and logs an error once per change.
    """

    def __init__(self, path: Path | None, *, interval_s: float | None = None,
                 clock: Any = time.monotonic) -> None:
        self.path = path
        self.interval_s = interval_s
        self._clock = clock
        self._config = AlertConfig()
        self._mtime_ns: int | None = None
        self._next_check = 0.0
        self.reloads = 0
        self.errors = 0
        if path is not None:
            self.reload()

    def current(self) -> AlertConfig:
        now = self._clock()
        if self.path is not None and now >= self._next_check:
            self._next_check = now + (self.interval_s or self._config.reload_interval_s)
            if self._file_mtime() != self._mtime_ns:
                self.reload()
        return self._config

    def reload(self) -> bool:
        """Read the file now; True if a new config took effect, False if the old one stays."""
        if self.path is None:
            return False
        self._mtime_ns = self._file_mtime()
        try:
            config = load_config(self.path)
        except ValueError as error:
            self.errors += 1
            log.error("%s; keeping the previous alert config", error)
            return False
        self._config = config
        self.reloads += 1
        log.info("alert config loaded from %s", self.path)
        return True

    def install_sighup_handler(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (``kill -HUP <worker pid>``); a no-op where signals are missing."""
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, AttributeError, RuntimeError, ValueError) as error:
            log.warning("cannot reload the alert config on SIGHUP here: %s", error)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the alert config")
        self.reload()

    def _file_mtime(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns if self.path is not None else None
        except OSError:
            return None
