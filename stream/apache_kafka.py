"""Run a real single-node Apache Kafka (KRaft) from Maven Central jars, without Docker.

Why: integration tests (``CRM_TEST_KAFKA=apache``) and ``crm dev --broker apache`` need the
genuine broker, not a protocol look-alike, on machines where Docker is unavailable. Only a JDK
(17+) and Maven are required; the jars are fetched once into a cache outside the repository.
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
from pathlib import Path
from types import TracebackType
from typing import IO

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

#: The JVM options Kafka's own start scripts use (``kafka-run-class.sh``'s performance options,
#: ``kafka-server-start.sh``'s heap): G1 aiming at 20 ms pauses, not its default 200 ms, which
#: a broker shared by latency-bound consumers cannot afford; a fixed heap, never resized.
JVM_OPTIONS = ("-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
               "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")

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
# Single node: every internal topic at replication 1; topics are provisioned, never auto-created.
_STATIC_PROPS = """process.roles=broker,controller
node.id=1
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
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


class ApacheKafka:
    """A single-node KRaft broker+controller on 127.0.0.1, run as a child JVM.

    The JVM gets its own process group so stop() (also registered with atexit) can take down
    everything it spawned; a temporary data dir is removed on stop unless keep_data is set, and
    a caller-supplied data_dir is never removed (it is reused, without re-formatting, next time).
    """

    def __init__(self, *, data_dir: Path | None = None, version: str = KAFKA_VERSION,
                 jars_dir: Path | None = None, keep_data: bool = False,
                 start_timeout: float = 90.0, stop_timeout: float = 20.0) -> None:
        self._requested_dir = Path(data_dir) if data_dir is not None else None
        self._version, self._jars_dir, self._keep_data = version, jars_dir, keep_data
        self._start_timeout, self._stop_timeout = start_timeout, stop_timeout
        self._data_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._bootstrap: str | None = None
        self._ports: list[int] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the PLAINTEXT listener; only valid while running."""
        if self._bootstrap is None:
            raise RuntimeError("ApacheKafka is not running; call start() first")
        return self._bootstrap

    @property
    def pid(self) -> int | None:
        """PID (and process-group id) of the broker JVM, for diagnostics and leak checks."""
        return self._proc.pid if self._proc is not None else None

    @property
    def data_dir(self) -> Path | None:
        """Directory holding server.properties, the log dirs and kafka.log / kafka.out."""
        return self._data_dir

    def start(self) -> str:
        """Fetch jars if needed, format storage, start the JVM and wait until it serves metadata."""
        if self._proc is not None:
            return self.bootstrap
        started = time.monotonic()
        libs = ensure_kafka_jars(self._version, self._jars_dir)
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Apache Kafka launcher needs a Java 17+ 'java' on PATH")
        data = self._requested_dir or Path(tempfile.mkdtemp(prefix="crm-kafka-"))
        data.mkdir(parents=True, exist_ok=True)
        self._data_dir = data
        # Started again (after stop()), it listens where it did, so clients find it again.
        port, controller = self._ports = self._ports or _free_ports(2)
        props = data / "server.properties"
        props.write_text(_STATIC_PROPS + (
            f"controller.quorum.voters=1@{_HOST}:{controller}\n"
            f"listeners=PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller}\n"
            f"advertised.listeners=PLAINTEXT://{_HOST}:{port}\nlog.dirs={data / 'logs'}\n"))
        log4j = data / "log4j2.xml"
        log4j.write_text(_LOG4J2_XML.format(path=data / "kafka.log"))
        classpath = f"{libs}/*"
        atexit.register(self.stop)
        try:
            if not (data / "logs" / "meta.properties").exists():
                # Static quorum (controller.quorum.voters) => format WITHOUT --standalone:
                # Kafka 4.1 rejects --standalone unless controller.quorum.bootstrap.servers is used.
                fmt = subprocess.run(
                    [java, "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}",
                     "kafka.tools.StorageTool", "format", "-t", _random_cluster_id(),
                     "-c", str(props)],
                    capture_output=True, text=True, timeout=120)
                if fmt.returncode != 0:
                    raise RuntimeError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
            self._out = open(data / "kafka.out", "ab")  # noqa: SIM115 - closed in stop()
            self._proc = subprocess.Popen(
                [java, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
                 "kafka.Kafka", str(props)],
                stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                cwd=data, start_new_session=True)
            self._bootstrap = f"{_HOST}:{port}"
            self._wait_ready(self._proc, port)
        except BaseException:
            self.stop()
            raise
        log.info("Apache Kafka %s up at %s in %.1f s (data %s)",
                 self._version, self._bootstrap, time.monotonic() - started, data)
        return self._bootstrap

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> None:
        """Ready means the port accepts TCP and a real client gets metadata listing the broker."""
        deadline = time.monotonic() + self._start_timeout
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Apache Kafka exited with code {proc.returncode} during "
                                   f"start:\n{self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((_HOST, port), 0.5):
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": f"{_HOST}:{port}"})
                with contextlib.suppress(KafkaException):
                    if admin.list_topics(timeout=2).brokers:
                        return
            time.sleep(0.2)
        raise TimeoutError(f"Apache Kafka not ready on {_HOST}:{port} after "
                           f"{self._start_timeout:g} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 40) -> str:
        """Last lines of the JVM's stdout and log4j file, so a failed start explains itself."""
        if self._data_dir is None:
            return "(no data dir)"
        parts = []
        for name in ("kafka.out", "kafka.log"):
            try:
                text = (self._data_dir / name).read_text(errors="replace")
            except OSError:
                text = "(missing)"
            parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after stop_timeout; then drop a temp data dir."""
        proc, self._proc, self._bootstrap = self._proc, None, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("Apache Kafka pid %s ignored SIGTERM; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # sweep anything the JVM left behind
                os.killpg(proc.pid, signal.SIGKILL)
        if self._out is not None:
            self._out.close()
            self._out = None
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
