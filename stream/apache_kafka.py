"""Run a real Apache Kafka (KRaft) from Maven Central jars, without Docker: one node, or a
cluster of several brokers on this machine.

Why: integration tests (``CRM_TEST_KAFKA=apache``) and ``crm dev --broker apache`` need the
genuine broker, not a protocol look-alike, on machines where Docker is unavailable. Only a JDK
(17+) and Maven are required; the jars are fetched once into a cache outside the repository.
With ``brokers=3`` (``crm dev --broker apache --brokers 3``, the cluster tests) every node is
broker and controller, internal topics are replicated three times and ``min.insync.replicas``
is 2, so a topic created with replication factor 3 survives the loss of any one broker.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

#: The JVM options Kafka's own start scripts use (``kafka-run-class.sh``'s performance options,
#: ``kafka-server-start.sh``'s heap): G1 aiming at 20 ms pauses, not its default 200 ms, which
#: a broker shared by latency-bound consumers cannot afford; a fixed heap, never resized.
JVM_OPTIONS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
               "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")
#: ``kafka-server-start.sh``'s heap for one broker; a local cluster's brokers get less each.
DEFAULT_HEAP_MB = 1024

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# Kafka 4 logs through Log4j2; its own pom pins slf4j-api 1.7, which cannot see the slf4j2
# binding, so slf4j-api 2.x is declared directly (nearest declaration wins in Maven).
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"
JARS_DIR_ENV = "CRM_KAFKA_JARS_DIR"
_MARKER = "fetch-complete"
_HOST = "127.0.0.1"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>local.crm</groupId><artifactId>apache-kafka-runtime</artifactId>
  <version>{version}</version><packaging>pom</packaging>
  <dependencies>
{deps}  </dependencies>
</project>
"""
# Every node is broker and controller; internal topics are replicated to up to three brokers
# and need two in sync when there are three; topics are provisioned, never auto-created. A
# broker that stops heartbeating is fenced (and its partitions led elsewhere) after 6 s.
_STATIC_PROPS = """process.roles=broker,controller
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
num.partitions=1
offsets.topic.replication.factor={replication}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
default.replication.factor={replication}
min.insync.replicas={min_isr}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
"""
_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?><Configuration status="WARN">
  <Appenders><File name="file" fileName="{path}"><PatternLayout pattern="[%d] %p %c: %m%n"/>
  </File></Appenders><Loggers><Root level="WARN"><AppenderRef ref="file"/></Root></Loggers>
</Configuration>
"""


def default_jars_dir(version: str = KAFKA_VERSION) -> Path:
    """Cache dir for the jars: outside the repo so they survive clean checkouts and CI caches."""
    env = os.environ.get(JARS_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache/crm" / f"apache-kafka-{version}"


def ensure_kafka_jars(version: str = KAFKA_VERSION, jars_dir: Path | None = None) -> Path:
    """Fetch Kafka and its runtime dependencies once; return the directory to put on the classpath.

    A file lock keeps parallel test workers from fetching into the same cache at once, and the
    marker is written only after Maven succeeded, so an interrupted fetch is simply retried.
    """
    cache = Path(jars_dir) if jars_dir is not None else default_jars_dir(version)
    libs, marker = cache / "libs", cache / _MARKER
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == version:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Apache Kafka launcher needs Maven ('mvn') on PATH to fetch jars")
        deps = [("org.apache.kafka", f"kafka_{SCALA_VERSION}", version),
                ("org.slf4j", "slf4j-api", SLF4J_VERSION)] + [
            ("org.apache.logging.log4j", a, LOG4J_VERSION)
            for a in ("log4j-api", "log4j-core", "log4j-slf4j2-impl")]
        pom = _POM.format(version=version, deps="".join(
            f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version></dependency>\n" for g, a, v in deps))
        (cache / "pom.xml").write_text(pom)
        shutil.rmtree(libs, ignore_errors=True)
        log.info("fetching Apache Kafka %s from Maven Central (first run only) into %s",
                 version, cache)
        started = time.monotonic()
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(cache / "pom.xml"),
               "dependency:copy-dependencies", "-DincludeScope=runtime",
               f"-DoutputDirectory={libs}"]
        done = subprocess.run(cmd, cwd=cache, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise RuntimeError(f"fetching Apache Kafka {version} failed:\n{tail}")
        marker.write_text(version)
        log.info("fetched Apache Kafka %s in %.1f s", version, time.monotonic() - started)
    return libs


def _free_ports(count: int) -> list[int]:
    """Ask the OS for distinct free loopback ports (held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((_HOST, 0))
        return [s.getsockname()[1] for s in socks]


def _random_cluster_id() -> str:
    """Kafka's Uuid.randomUuid: 16 random bytes, base64url without padding, not starting '-'."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class _Broker:
    """One node of the cluster: its id, ports, data folder and (while running) its JVM."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    out: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{_HOST}:{self.port}"


class ApacheKafka:
    """KRaft Apache Kafka on 127.0.0.1: ``brokers`` nodes, each broker and controller, each a
    child JVM with a ``heap_mb`` heap.

    Each JVM gets its own process group so stop() (also registered with atexit) can take down
    everything it spawned; a temporary data dir is removed on stop unless keep_data is set, and
    a caller-supplied data_dir is never removed (it is reused, without re-formatting, next time).
    One broker keeps its files in the data dir itself, as before; several keep theirs in
    ``broker-<id>/`` under it. Tests stop, kill and restart single brokers
    (:meth:`stop_broker`, :meth:`kill_broker`, :meth:`start_broker`).
    """

    def __init__(self, *, data_dir: Path | None = None, version: str = KAFKA_VERSION,
                 jars_dir: Path | None = None, keep_data: bool = False,
                 start_timeout: float = 90.0, stop_timeout: float = 20.0, brokers: int = 1,
                 heap_mb: int = DEFAULT_HEAP_MB) -> None:
        if brokers < 1:
            raise ValueError("a Kafka cluster needs at least one broker")
        self._requested_dir = Path(data_dir) if data_dir is not None else None
        self._version, self._jars_dir, self._keep_data = version, jars_dir, keep_data
        self._start_timeout, self._stop_timeout = start_timeout, stop_timeout
        self._broker_count, self._heap_mb = brokers, heap_mb
        self._data_dir: Path | None = None
        self._brokers: list[_Broker] = []
        self._java: str | None = None
        self._classpath: str | None = None
        self._running = False

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of each broker's PLAINTEXT listener, comma-separated; only valid
        while running."""
        if not self._running:
            raise RuntimeError("ApacheKafka is not running; call start() first")
        return ",".join(broker.address for broker in self._brokers)

    @property
    def addresses(self) -> list[str]:
        """Each broker's ``host:port``, by node id."""
        return [broker.address for broker in self._brokers]

    @property
    def pid(self) -> int | None:
        """PID (and process-group id) of the first broker's JVM, for diagnostics."""
        pids = self.pids
        return pids[0] if pids else None

    @property
    def pids(self) -> list[int]:
        """PIDs (and process-group ids) of the running brokers' JVMs."""
        return [broker.proc.pid for broker in self._brokers
                if broker.proc is not None and broker.proc.poll() is None]

    @property
    def data_dir(self) -> Path | None:
        """Directory holding server.properties, the log dirs and kafka.log / kafka.out (in
        ``broker-<id>/`` per broker when there are several)."""
        return self._data_dir

    def start(self) -> str:
        """Fetch jars if needed, format storage, start the JVMs and wait until a client sees
        every broker in the metadata."""
        if self._running:
            return self.bootstrap
        started = time.monotonic()
        libs = ensure_kafka_jars(self._version, self._jars_dir)
        self._java = shutil.which("java")
        if self._java is None:
            raise RuntimeError("Apache Kafka launcher needs a Java 17+ 'java' on PATH")
        self._classpath = f"{libs}/*"
        data = self._requested_dir or Path(tempfile.mkdtemp(prefix="crm-kafka-"))
        data.mkdir(parents=True, exist_ok=True)
        self._data_dir = data
        count = self._broker_count
        ports = _free_ports(2 * count)
        self._brokers = [
            _Broker(node_id=index + 1, port=ports[2 * index],
                    controller_port=ports[2 * index + 1],
                    directory=data if count == 1 else data / f"broker-{index + 1}")
            for index in range(count)]
        voters = ",".join(f"{b.node_id}@{_HOST}:{b.controller_port}" for b in self._brokers)
        static = _STATIC_PROPS.format(replication=min(3, count),
                                      min_isr=2 if count >= 3 else 1)
        cluster_id = _random_cluster_id()
        atexit.register(self.stop)
        self._running = True
        try:
            for broker in self._brokers:
                broker.directory.mkdir(parents=True, exist_ok=True)
                (broker.directory / "server.properties").write_text(static + (
                    f"node.id={broker.node_id}\ncontroller.quorum.voters={voters}\n"
                    f"listeners=PLAINTEXT://{broker.address},"
                    f"CONTROLLER://{_HOST}:{broker.controller_port}\n"
                    f"advertised.listeners=PLAINTEXT://{broker.address}\n"
                    f"log.dirs={broker.directory / 'logs'}\n"))
                (broker.directory / "log4j2.xml").write_text(
                    _LOG4J2_XML.format(path=broker.directory / "kafka.log"))
                self._format(broker, cluster_id)
            for broker in self._brokers:
                self._launch(broker)
            self._wait_ready(count)
        except BaseException:
            self.stop()
            raise
        log.info("Apache Kafka %s up at %s in %.1f s (data %s)",
                 self._version, self.bootstrap, time.monotonic() - started, data)
        return self.bootstrap

    def _format(self, broker: _Broker, cluster_id: str) -> None:
        """Format a broker's storage once (a reused data dir keeps its cluster id)."""
        if (broker.directory / "logs" / "meta.properties").exists():
            return
        assert self._java is not None and self._classpath is not None
        # Static quorum (controller.quorum.voters) => format WITHOUT --standalone:
        # Kafka 4.1 rejects --standalone unless controller.quorum.bootstrap.servers is used.
        fmt = subprocess.run(
            [self._java, "-cp", self._classpath,
             f"-Dlog4j2.configurationFile={broker.directory / 'log4j2.xml'}",
             "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(broker.directory / "server.properties")],
            capture_output=True, text=True, timeout=120)
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")

    def _launch(self, broker: _Broker) -> None:
        assert self._java is not None and self._classpath is not None
        broker.out = open(broker.directory / "kafka.out", "ab")  # noqa: SIM115 - closed on stop
        heap = f"{self._heap_mb}m"
        broker.proc = subprocess.Popen(
            [self._java, f"-Xms{heap}", f"-Xmx{heap}", *JVM_OPTIONS,
             f"-Dlog4j2.configurationFile={broker.directory / 'log4j2.xml'}",
             "-cp", self._classpath, "kafka.Kafka", str(broker.directory / "server.properties")],
            stdin=subprocess.DEVNULL, stdout=broker.out, stderr=subprocess.STDOUT,
            cwd=broker.directory, start_new_session=True)

    def _wait_ready(self, expected: int) -> None:
        """Ready means every running broker's port accepts TCP and a real client gets
        metadata listing ``expected`` brokers."""
        deadline = time.monotonic() + self._start_timeout
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            for broker in self._brokers:
                if broker.proc is not None and broker.proc.poll() is not None:
                    raise RuntimeError(
                        f"Apache Kafka broker {broker.node_id} exited with code "
                        f"{broker.proc.returncode} during start:\n{self._log_tail(broker)}")
            live = [b for b in self._brokers if b.proc is not None]
            with contextlib.suppress(OSError), socket.create_connection(
                    (_HOST, live[0].port), 0.5):
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": ",".join(
                        b.address for b in live)})
                with contextlib.suppress(KafkaException):
                    if len(admin.list_topics(timeout=2).brokers) >= expected:
                        return
            time.sleep(0.2)
        raise TimeoutError(f"Apache Kafka not ready at {self.bootstrap} after "
                           f"{self._start_timeout:g} s:\n"
                           + "\n".join(self._log_tail(b) for b in self._brokers))

    def _log_tail(self, broker: _Broker, lines: int = 40) -> str:
        """Last lines of a JVM's stdout and log4j file, so a failed start explains itself."""
        parts = [f"=== broker {broker.node_id} ==="]
        for name in ("kafka.out", "kafka.log"):
            try:
                text = (broker.directory / name).read_text(errors="replace")
            except OSError:
                text = "(missing)"
            parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def broker_index(self, node_id: int) -> int:
        return next(i for i, broker in enumerate(self._brokers) if broker.node_id == node_id)

    def kill_broker(self, node_id: int) -> None:
        """SIGKILL one broker's JVM: a crash, no controlled shutdown."""
        self._halt(self._brokers[self.broker_index(node_id)], signal.SIGKILL)

    def stop_broker(self, node_id: int) -> None:
        """Stop one broker (SIGTERM: a controlled shutdown moves its leaderships first)."""
        self._halt(self._brokers[self.broker_index(node_id)], signal.SIGTERM)

    def start_broker(self, node_id: int) -> None:
        """Start a stopped or killed broker again, on its old ports and data."""
        broker = self._brokers[self.broker_index(node_id)]
        if broker.proc is not None and broker.proc.poll() is None:
            return
        self._launch(broker)

    def _halt(self, broker: _Broker, first: int) -> None:
        self._halt_all([broker], first, self._stop_timeout)

    def _halt_all(self, brokers: list[_Broker], first: int, timeout: float) -> None:
        """Signal every one at once, wait up to ``timeout``, then SIGKILL what is left."""
        procs = [broker.proc for broker in brokers if broker.proc is not None]
        for broker in brokers:
            broker.proc = None
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, first)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("Apache Kafka pid %s ignored SIGTERM; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # sweep anything the JVM left behind
                os.killpg(proc.pid, signal.SIGKILL)
        for broker in brokers:
            if broker.out is not None:
                broker.out.close()
                broker.out = None

    def stop(self) -> None:
        """SIGTERM every broker's process group, SIGKILL after stop_timeout; then drop a
        temporary data dir."""
        self._running = False
        # The last broker of a cluster to stop has no controller quorum left to agree to its
        # controlled shutdown and would wait for one forever: a few seconds, then SIGKILL.
        self._halt_all(self._brokers, signal.SIGTERM, self._stop_timeout
                       if len(self._brokers) == 1 else min(self._stop_timeout, 5.0))
        atexit.unregister(self.stop)
        if self._data_dir is not None and self._requested_dir is None and not self._keep_data:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> ApacheKafka:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
