"""Run the Faust worker as a deployable (``crm worker``)."""

from __future__ import annotations

import logging
import sys

import faust
import mode.loop

from agents.app import create_app
from agents.collector import configure_worker_process
from stream.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Consume the input topics until SIGINT/SIGTERM; Faust stops the agents gracefully."""
    # uvloop, as ``faust -L uvloop`` would: Faust and aiokafka make many futures and tasks
    # per fetch, and at 1,500 events/s one worker kept up with it and fell behind without.
    if sys.platform != "win32":  # uvloop has no Windows build
        mode.loop.use("uvloop")
    configure_worker_process()
    app = create_app(settings)
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr="127.0.0.1")
    log.info("worker %s consuming from %s, redis %s", settings.app_id, settings.kafka_bootstrap,
             settings.redis_url)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    # No terminal spinner for a service: at WARNING and above Faust would otherwise set the
    # root logger to DEBUG so the spinner turns on every record, and every debug line of
    # aiokafka and Faust would be built and thrown away (measured: ~5% of a busy worker).
    worker.spinner = None
    worker.execute_from_commandline()
