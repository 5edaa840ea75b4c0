"""Alert configuration: the documented defaults, validation, reload on change and on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from agents.alert_config import AlertConfig, AlertConfigWatcher, load_config, parse_duration_s
from schemas.records import AlertKind

EXAMPLE = Path(__file__).resolve().parents[2] / "alerts.example.yaml"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def test_the_example_file_equals_the_built_in_defaults() -> None:
    """Verify that alerts.example.yaml documents exactly what a worker runs without a file."""
    assert load_config(EXAMPLE) == AlertConfig()


def test_every_kind_has_a_rule() -> None:
    """Verify that each alert kind can be enabled, disabled and has a cooldown."""
    config = AlertConfig()
    for kind in AlertKind:
        assert config.enabled(kind) and config.cooldown_ms(kind) > 0


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1.5h", 5400),
                                               ("7d", 604_800), ("2w", 1_209_600), (45, 45)])
def test_durations_read_like_people_write_them(text: str | int, seconds: float) -> None:
    """Verify that cooldowns and timeouts accept 90s, 30m, 6h, 7d, 2w or plain seconds."""
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("raw", [
    {"churn_risk": {"treshold": 0.8}},  # misspelt key
    {"churn_risk": {"threshold": 1.5}},
    {"churn_risk": {"threshold": 0.3, "hysteresis": 0.5}},
    {"cart_abandonment": {"timeout": "soon"}},
    {"cart_abandonment": {"timeout": 0}},
    {"negative_ticket": {"cooldown": -5}},
])
def test_invalid_configs_are_refused(raw: dict[str, object]) -> None:
    """Verify that a wrong or misspelt setting is an error, not silently ignored."""
    with pytest.raises(ValueError):
        AlertConfig.model_validate(raw)


def test_without_a_path_the_defaults_apply() -> None:
    """Verify that no CRM_ALERTS_CONFIG means the built-in defaults."""
    assert AlertConfigWatcher(None).current() == AlertConfig()


def test_a_changed_file_takes_effect_after_the_check_interval(tmp_path: Path) -> None:
    """Verify that the file's mtime is checked every interval and a change is loaded."""
    path = tmp_path / "alerts.yaml"
    write(path, "reload_interval_s: 5\nchurn_risk: {threshold: 0.8}\n", mtime=1_000)
    clock = FakeClock()
    watcher = AlertConfigWatcher(path, clock=clock)
    assert watcher.current().churn_risk.threshold == 0.8
    write(path, "reload_interval_s: 5\nchurn_risk: {threshold: 0.6}\n", mtime=2_000)
    clock.now += 1
    assert watcher.current().churn_risk.threshold == 0.8, "not yet: within the interval"
    clock.now += 5
    assert watcher.current().churn_risk.threshold == 0.6
    assert watcher.reloads == 2


def test_a_bad_file_keeps_the_previous_config_and_logs_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Verify that a typo in the file never replaces a working config."""
    path = tmp_path / "alerts.yaml"
    write(path, "negative_ticket: {csat_at_most: 1}\n", mtime=1_000)
    clock = FakeClock()
    watcher = AlertConfigWatcher(path, interval_s=1, clock=clock)
    for broken in ("negative_ticket: {csat_at_most: [\n", "negative_ticket: {csat_at_most: 9}\n",
                   "- a list\n"):
        write(path, broken, mtime=1_000 + watcher.errors + 1)
        clock.now += 2
        with caplog.at_level(logging.ERROR, logger="agents.alert_config"):
            assert watcher.current().negative_ticket.csat_at_most == 1
    assert watcher.errors == 3
    assert "keeping the previous alert config" in caplog.text
    clock.now += 2
    watcher.current()
    assert watcher.errors == 3, "an unchanged bad file is not re-read every interval"
    path.unlink()
    clock.now += 2
    assert watcher.current().negative_ticket.csat_at_most == 1


async def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    """Verify that SIGHUP reloads the file without waiting for the interval."""
    path = tmp_path / "alerts.yaml"
    write(path, "reload_interval_s: 3600\nhigh_value: {percentile: 0.95}\n", mtime=1_000)
    watcher = AlertConfigWatcher(path)
    loop = asyncio.get_running_loop()
    watcher.install_sighup_handler(loop)
    try:
        write(path, "reload_interval_s: 3600\nhigh_value: {percentile: 0.9}\n", mtime=1_000)
        assert watcher.current().high_value.percentile == 0.95
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if watcher.reloads == 2:
                break
        assert watcher.current().high_value.percentile == 0.9
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
