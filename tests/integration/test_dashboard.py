"""The dashboard in headless Chromium against a running stack with traffic.

A worker, restored from a checkpoint of models that have learnt a shop before, consumes
events sent with the SDK while the page is open; an alert XADDed to the alert stream must
appear in the live feed. A screenshot is kept in
``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from feature_store.keys import (
    ALERTS_STREAM_KEY,
    MODELS_HISTORY_KEY,
    MODELS_KEY,
    THROUGHPUT_KEY,
    customers_key,
    ranking_key,
    segments_key,
)
from stream.processes import ManagedProcess
from stream.producer import EventProducer
from stream.settings import Settings
from tests.helpers import wait_for
from tests.integration.support import ApiServer
from tests.trained_models import save_checkpoint, trained_bundle

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


def _traffic(settings: Settings, stop: threading.Event) -> None:
    """A small web shop: views, carts and purchases of 40 customers until told to stop."""
    rng = random.Random(7)
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    with EventProducer(settings=settings) as producer:
        for n in range(100_000):
            if stop.is_set():
                return
            customer = f"cust-{rng.randrange(40):03d}"
            at = (start + timedelta(seconds=n * 7)).isoformat()
            product = f"p{rng.randrange(25)}"
            if rng.random() < 0.15:
                price = rng.choice([9.5, 19.0, 42.0])
                producer.send({"event_id": f"e{n}", "customer_id": customer, "type": "purchase",
                               "order_id": f"o{n}", "currency": "EUR", "total": price,
                               "items": [{"product_id": product, "quantity": 1,
                                          "unit_price": price, "category": "tea"}],
                               "occurred_at": at})
            else:
                producer.send({"event_id": f"e{n}", "customer_id": customer, "type": "click",
                               "kind": rng.choice(["product_view", "add_to_cart", "page_view"]),
                               "product_id": product, "category": "tea", "occurred_at": at,
                               "session_id": f"s{n // 20}"})
            if n % 20 == 0:
                producer.flush()
                time.sleep(0.05)


def _alert(customer_id: str) -> dict[str, bytes | str]:
    alert = {"alert_id": "al_dashboard_test", "kind": "churn_risk", "customer_id": customer_id,
             "tenant": "default", "score": 0.93, "threshold": 0.7,
             "reason": "No order for 41 days after 3 orders; churn risk 93%.",
             "explanation": [], "triggered_by": "e1", "occurred_at": "2026-03-01T10:00:00Z",
             "emitted_at": datetime.now(UTC).isoformat(), "model_version": "churn-v1"}
    return {"alert": orjson.dumps(alert), "tenant": "default", "kind": "churn_risk"}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-quic", "--no-first-run",
                     "--disable-component-update", "--disable-sync", "--window-size=1440,1250",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or ""), options=options)
    yield driver
    driver.quit()


def test_dashboard_shows_the_live_system(
    api_server: ApiServer, settings: Settings, start_worker: Callable[..., ManagedProcess],
    browser: object,
) -> None:
    """Verify that the page draws throughput, segments, models, at-risk customers, the
    revenue forecast and a live alert from a running stack, with no resource fetched from
    outside."""
    driver = browser  # a selenium WebDriver
    store = redis.Redis.from_url(settings.redis_url)
    # Models that have learnt a shop before: a fresh worker serves no churn probability and
    # no segment until it has learnt enough itself.
    save_checkpoint(settings, trained_bundle())
    start_worker(telemetry_interval_s=1.0)
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(settings, stop), daemon=True)
    traffic.start()
    try:
        wait_for(lambda: store.zcard(customers_key("default")) >= 20, timeout=60,
                 what="the worker to know 20 customers")
        # Everything the page draws comes from the running worker itself.
        wait_for(lambda: all(store.exists(key) for key in (
            segments_key("default"), ranking_key("default", "churn"), MODELS_HISTORY_KEY,
            MODELS_KEY, THROUGHPUT_KEY)), timeout=60, what="the worker's models and telemetry")
        driver.get(f"{api_server.url}/?key={api_server.key}")  # type: ignore[attr-defined]
        run = driver.execute_script  # type: ignore[attr-defined]
        assert "key=" not in driver.current_url  # type: ignore[attr-defined]
        wait_for(lambda: run("return document.getElementById('live').textContent") == "live",
                 timeout=20, what="the live alert stream")
        store.xadd(ALERTS_STREAM_KEY, _alert("cust-007"))
        wait_for(lambda: "cust-007" in run(
            "return document.getElementById('alert-feed').textContent"), timeout=15,
            what="the XADDed alert in the live feed")
        counts = wait_for(lambda: run("""
            const c = window.crmDashboard.charts;
            const n = {throughput: c.throughput.data.datasets[0].data.length,
                       segments: c.segments.data.labels.length,
                       quality: c.quality.data.datasets.filter(d => d.data.length).length,
                       examples: c.examples.data.datasets.filter(d => d.data.length).length,
                       risky: document.querySelectorAll('#at-risk-table tbody tr').length,
                       forecast: c.forecast.data.datasets[0].data.length,
                       customers: document.getElementById('kpi-customers').textContent};
            return Object.values(n).every(v => v && v !== '\u2013') ? n : null;"""),
            timeout=20, what="every chart and table to hold data")
        assert counts["segments"] >= 1 and counts["risky"] >= 5
        # Quality metrics have a chart of their own: scores on a 0..1 axis, the lift on its
        # own axis, and no example counts among them (those are charted apart).
        quality = run("""return window.crmDashboard.charts.quality.data.datasets.map(
            d => ({label: d.label, axis: d.yAxisID, values: d.data.map(p => p.y)}));""")
        assert any("hit rate@10" in series["label"] for series in quality), quality
        for series in quality:
            assert "examples" not in series["label"]
            if series["axis"] == "y":
                assert all(0 <= value <= 1 for value in series["values"]), series
            else:
                assert (series["axis"], "lift over popularity" in series["label"]) == ("ratio",
                                                                                    True)
        examples = run("""return window.crmDashboard.charts.examples.data.datasets.map(
            d => d.label);""")
        assert {"churn", "recommendations", "segments"} <= set(examples)
        time.sleep(1.5)  # let the fresh-alert highlight fade for the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))  # type: ignore[attr-defined]
        external = run("""return performance.getEntriesByType('resource')
            .map(e => e.name).filter(u => !u.startsWith(location.origin));""")
        assert external == []
    finally:
        stop.set()
        traffic.join(10)


def test_api_docs_render_without_internet(api_server: ApiServer, browser: object) -> None:
    """Verify that /docs draws every operation of the OpenAPI document with Swagger UI from
    the app's own files, with no resource fetched from outside."""
    driver = browser  # a selenium WebDriver
    driver.get(f"{api_server.url}/docs")  # type: ignore[attr-defined]
    run = driver.execute_script  # type: ignore[attr-defined]
    operations = wait_for(lambda: run(
        "return document.querySelectorAll('.opblock-summary-path').length"), timeout=20,
        what="Swagger UI to list the operations")
    paths = run("return [...document.querySelectorAll('.opblock-summary-path')]"
                ".map(e => e.textContent)")
    assert operations >= 10 and "/v1/events" in paths
    assert run("return document.querySelector('.errors-wrapper')") is None
    external = run("""return performance.getEntriesByType('resource')
        .map(e => e.name).filter(u => !u.startsWith(location.origin));""")
    assert external == []
