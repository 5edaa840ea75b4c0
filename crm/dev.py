"""``crm dev``: the whole system on one machine, started and stopped by one command.

Uses ``CRM_KAFKA_BOOTSTRAP`` / ``CRM_REDIS_URL`` when they are set, otherwise starts the
embedded broker (or Apache Kafka with ``--broker apache``, ``--brokers N`` of them) and a
local redis-server (or a Redis Cluster with ``--redis cluster``). Every process it starts runs
in its own process group and is stopped on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from stream.devstack import EmbeddedBroker, LocalRedisCluster, RedisServer
from stream.processes import ManagedProcess
from stream.settings import Settings
from stream.topics import create_topics

log = logging.getLogger(__name__)

#: Heap of each broker of a local Apache Kafka cluster (one broker gets Kafka's own 1 GB).
CLUSTER_BROKER_HEAP_MB = 512

#: The simulated shop of ``crm dev --simulate``: its customers, and the days of its history
#: replayed before live traffic.
SIMULATED_CUSTOMERS = 600
HISTORY_DAYS = 60


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class DevStack:
    """Start the stack's pieces in order; stop them in reverse order."""

    def __init__(self, *, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[tuple[str, _Stoppable]] = []

    def stop(self) -> None:
        for name, thing in reversed(self.started):
            log.info("stopping %s", name)
            try:
                thing.stop()
            except Exception:  # keep stopping the rest
                log.exception("could not stop %s", name)
        self.started.clear()


def _crm_process(name: str, args: list[str], env: dict[str, str], work_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "crm", *args],
        log_path=work_dir / f"{name}.log",
        env=env,
    )


def run_dev(
    *,
    broker: Literal["embedded", "apache"],
    port: int,
    simulate_rate: float | None,
    work_dir: Path,
    echo: Any = print,
    brokers: int = 1,
    redis_mode: Literal["single", "cluster"] = "single",
) -> None:
    """Run until interrupted; everything started here is stopped before returning."""
    work_dir.mkdir(parents=True, exist_ok=True)
    stack = DevStack(work_dir=work_dir)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        bootstrap = os.environ.get("CRM_KAFKA_BOOTSTRAP")
        if not bootstrap:
            if broker == "apache":
                from stream.apache_kafka import ApacheKafka

                kafka = ApacheKafka(
                    data_dir=work_dir / ("apache-kafka" if brokers == 1
                                         else f"apache-kafka-{brokers}-brokers"),
                    brokers=brokers,
                    heap_mb=1024 if brokers == 1 else CLUSTER_BROKER_HEAP_MB)
                echo(f"starting Apache Kafka, {brokers} broker(s) (the first run fetches it "
                     "from Maven Central) ...")
                bootstrap = kafka.start()
                stack.started.append(("Apache Kafka", kafka))
            else:
                embedded = EmbeddedBroker(work_dir=work_dir)
                bootstrap = embedded.start()
                stack.started.append(("embedded broker", embedded))
        redis_url = os.environ.get("CRM_REDIS_URL")
        # What the processes started here need beyond CRM_* variables already set.
        overrides: dict[str, Any] = {}
        if not redis_url and redis_mode == "cluster":
            cluster = LocalRedisCluster(work_dir=work_dir, node_timeout_ms=5000)
            echo("starting a Redis Cluster (three masters, a replica each) ...")
            redis_url = cluster.start()
            stack.started.append(("Redis Cluster", cluster))
            overrides.update(redis_cluster=True, redis_wait_replicas=1)
        elif not redis_url:
            redis_server = RedisServer(work_dir=work_dir)
            redis_url = redis_server.start()
            stack.started.append(("redis-server", redis_server))
        if not os.environ.get("CRM_KAFKA_BOOTSTRAP") and broker == "apache":
            overrides["replication_factor"] = min(3, brokers)

        # The checkpoints beside the stack's Redis data: a model restored from another
        # stack's run would score customers it never learnt from.
        env = {"CRM_KAFKA_BOOTSTRAP": bootstrap, "CRM_REDIS_URL": redis_url,
               "CRM_CHECKPOINT_DIR": os.environ.get("CRM_CHECKPOINT_DIR",
                                                    str(work_dir / "checkpoints")),
               **{f"CRM_{name.upper()}": str(value).lower() if isinstance(value, bool)
                  else str(value) for name, value in overrides.items()}}
        settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url).model_copy(
            update=overrides)
        for outcome in create_topics(settings):
            log.info("topic %s (%d partitions)%s", outcome.topic, outcome.partitions,
                     " created" if outcome.created else "")

        api_url = f"http://127.0.0.1:{port}"
        info: dict[str, Any] = {"kafka_bootstrap": bootstrap, "redis_url": redis_url,
                                "api_url": api_url, "dashboard_url": f"{api_url}/"}
        api_key = _create_dev_key(settings)
        if api_key:
            info["api_key"] = api_key
            info["dashboard_url"] = f"{api_url}/?key={api_key}"

        worker = _crm_process("worker", ["worker"], env, work_dir).start()
        stack.started.append(("worker", worker))
        api = _crm_process("api", ["api", "--port", str(port)], env, work_dir).start()
        stack.started.append(("api", api))
        api.wait_until(lambda: _healthy(api_url), timeout=60, what="/healthz answer")
        if simulate_rate is not None:
            simulator = _crm_process(
                "simulator",
                # Sixty days of the shop's history first, as fast as the worker takes them,
                # so that churn scores and segments are served within a minute; then the
                # rest of its 180 days at the rate asked, ending now.
                ["simulate", "--rate", str(simulate_rate), "--customers",
                 str(SIMULATED_CUSTOMERS), "--history-days", str(HISTORY_DAYS),
                 "--truth", str(work_dir / "ground_truth.jsonl")],
                env, work_dir).start()
            stack.started.append(("simulator", simulator))

        (work_dir / "dev.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
        echo(f"CRM dev stack is up (details in {work_dir / 'dev.json'}):")
        for key, value in info.items():
            echo(f"  {key:16} {value}")
        echo("Press Ctrl-C to stop everything.")
        started = time.monotonic()
        warm = simulate_rate is None or not api_key
        while not stop_requested.wait(0.5):
            if not warm and _serving_churn(api_url, api_key or ""):
                warm = True
                echo(f"models ready after {time.monotonic() - started:.0f} s: churn scores and "
                     "segments are served (GET /v1/customers/at-risk, the dashboard)")
                info["models_ready"] = True
                (work_dir / "dev.json").write_bytes(orjson.dumps(info,
                                                                 option=orjson.OPT_INDENT_2))
            for name, thing in stack.started:
                if isinstance(thing, ManagedProcess) and not thing.is_running():
                    if name == "simulator" and thing.process and thing.process.returncode == 0:
                        echo("the simulated shop has played its whole period; the rest runs on")
                        stack.started.remove((name, thing))
                        break
                    echo(f"{name} exited unexpectedly; see {thing.log_path}")
                    stop_requested.set()
    finally:
        echo("stopping the dev stack ...")
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        echo("stopped.")


def _serving_churn(api_url: str, api_key: str) -> bool:
    """Whether the API serves a churn-ranked customer (the models have warmed up)."""
    import urllib.request

    request = urllib.request.Request(f"{api_url}/v1/customers/at-risk?limit=1",
                                     headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(orjson.loads(response.read())["customers"])
    except OSError:
        return False


def _healthy(api_url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{api_url}/healthz", timeout=2) as response:
        return bool(response.status == 200)


def _create_dev_key(settings: Settings) -> str | None:
    """A development API key with every scope, once the API has key support."""
    try:
        from api.keys import create_key_sync
    except ImportError:
        return None
    return create_key_sync(settings, tenant="default", scopes=("read", "ingest", "admin"),
                           name="crm dev")
