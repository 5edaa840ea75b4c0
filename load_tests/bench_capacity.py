"""Capacity on paper, from measured figures: what one event costs a worker, Redis and Kafka.

For each topology (``single``: one Apache Kafka broker and one redis-server; ``cluster``: three
brokers, replication factor 3, and a Redis Cluster of three masters with a replica each, the
workers waiting for one replica), the benchmark

1. starts the stack with the launchers (``stream.apache_kafka``, ``stream.devstack``) and
   creates the topics with ``crm topics create``;
2. produces a simulated shop's events with the producer SDK, all before any worker runs, so the
   worker then goes as fast as it can (its throughput, not a rate we chose);
3. starts one ``crm worker`` (with its recommender process) and, between the moments it has
   processed 2% and 98% of the events, takes the deltas of its CPU (and its recommender's,
   the brokers' and every redis-server's, from ``/proc``) and of Redis's ``INFO
   commandstats`` / ``INFO stats`` / ``INFO cpu`` on every node;
4. reads the input topics' size on the brokers' disks and Redis's memory afterwards.

It writes ``load_tests/results/CAPACITY-MEASURED.md``: the per-event figures the capacity
table of ``CAPACITY.md`` is computed from.

    python -m load_tests.bench_capacity --events 60000
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from load_tests.alerts_measure import worker_metrics
from load_tests.capacity_report import Measured, write
from load_tests.commands import create_topics, start_crm
from load_tests.measure import cpu_seconds, metric_total, spawned_children, speed_check_ms
from simulator import TOPIC_BY_TYPE, ShopSimulator
from stream.processes import free_port
from stream.producer import EventProducer
from stream.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "CAPACITY-MEASURED.md"
SECONDS_PER_DAY = 86_400


@dataclass
class RedisSnapshot:
    """What every redis-server of the stack has done so far."""

    calls: dict[str, Counter[str]] = field(default_factory=dict)  # node -> command -> calls
    net_in: dict[str, int] = field(default_factory=dict)
    net_out: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    role: dict[str, str] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)


def redis_snapshot(ports: list[int]) -> RedisSnapshot:
    snapshot = RedisSnapshot()
    for port in ports:
        client = redis.Redis(port=port, socket_timeout=5)
        try:
            stats = client.info("commandstats")
            other = client.info("stats")
            cpu = client.info("cpu")
            replication = client.info("replication")
            memory = client.info("memory")
        finally:
            client.close()
        node = f"127.0.0.1:{port}"
        snapshot.calls[node] = Counter({name.removeprefix("cmdstat_"): int(value["calls"])
                                        for name, value in stats.items()})
        snapshot.net_in[node] = int(other["total_net_input_bytes"])
        snapshot.net_out[node] = int(other["total_net_output_bytes"])
        snapshot.cpu[node] = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        snapshot.role[node] = str(replication["role"])
        snapshot.memory[node] = int(memory["used_memory"])
    return snapshot


def input_topic_bytes(data_dir: Path, prefix: str) -> int:
    """Bytes of the input topics' log segments on the brokers' disks (every replica)."""
    total = 0
    for name in ("shop.clicks", "shop.purchases", "support.tickets"):
        for segment in data_dir.rglob(f"{prefix}{name}-*/*.log"):
            total += segment.stat().st_size
    return total


def simulated_events(count: int, customers: int) -> list[dict[str, Any]]:
    shop = ShopSimulator(customers=customers, seed=21, start=datetime(2025, 2, 1, tzinfo=UTC),
                         days=150)
    return list(islice(shop.events(), count))


def run_topology(topology: str, args: argparse.Namespace, work: Path) -> Measured:
    from stream.apache_kafka import ApacheKafka
    from stream.devstack import LocalRedisCluster, RedisServer

    clustered = topology == "cluster"
    with ExitStack() as stack:
        kafka = ApacheKafka(data_dir=work / f"kafka-{topology}", brokers=3 if clustered else 1,
                            heap_mb=512 if clustered else 1024, start_timeout=180)
        bootstrap = kafka.start()
        stack.callback(kafka.stop)
        if clustered:
            cluster = LocalRedisCluster(work_dir=work / topology)
            redis_url = cluster.start()
            stack.callback(cluster.stop)
            redis_ports = [node.port for node in cluster.nodes]
            redis_pids = [node.process.pid for node in cluster.nodes]
        else:
            server = RedisServer(work_dir=work / topology, persist=False)
            redis_url = server.start()
            stack.callback(server.stop)
            redis_ports, redis_pids = [server.port], [server.process.pid]
        run_id = uuid.uuid4().hex[:6]
        settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis_url,
                            redis_cluster=clustered, redis_wait_replicas=1 if clustered else 0,
                            replication_factor=3 if clustered else 1,
                            partitions=args.partitions, topic_prefix=f"cap{run_id}.",
                            app_id=f"cap-{run_id}")
        create_topics(settings)
        events = simulated_events(args.events, args.customers)
        with EventProducer(settings=settings) as producer:
            for event in events:
                producer.send_raw(settings.topic(TOPIC_BY_TYPE[event["type"]]),
                                  event.get("customer_id") or f"anon:{event['anonymous_id']}",
                                  _json(event))
        assert kafka.data_dir is not None
        stored = input_topic_bytes(kafka.data_dir, settings.topic_prefix)
        id_bytes = (dedupe_bytes_per_id(redis_ports[0], events, ids=128),
                    dedupe_bytes_per_id(redis_ports[0], events, ids=10_000))
        idle_from, idle_cpu = time.monotonic(), cpu_seconds(kafka.pids) or 0.0
        time.sleep(10)
        broker_idle = ((cpu_seconds(kafka.pids) or 0.0) - idle_cpu) / (
            time.monotonic() - idle_from)
        memory_before = redis_snapshot(redis_ports).memory
        port = free_port()
        env = settings.model_copy(update={"checkpoint_dir": work / f"checkpoints-{topology}",
                                          "log_level": "WARNING"}).to_env()
        worker = start_crm(f"worker-{topology}", ["worker"], work=work,
                           env={**env, "CRM_WORKER_METRICS_PORT": str(port)})
        stack.callback(worker.stop)

        def processed() -> float:
            try:
                return sum(metric_total(text, "crm_worker_events_processed_total")
                           for text in worker_metrics([port]))
            except OSError:  # its metrics are not served yet
                return 0.0

        low, high = 0.02 * len(events), 0.98 * len(events)
        deadline = time.monotonic() + args.timeout
        while processed() < low:
            if time.monotonic() > deadline or not worker.is_running():
                raise SystemExit(f"the worker did not start processing:\n{worker.log_tail()}")
            time.sleep(0.05)
        recommender = spawned_children([worker.pid])
        done_before, started = processed(), time.monotonic()
        cpu_before = [cpu_seconds([worker.pid]), cpu_seconds(recommender),
                      cpu_seconds(kafka.pids), cpu_seconds(redis_pids)]
        redis_before = redis_snapshot(redis_ports)
        while processed() < high:
            if time.monotonic() > deadline or not worker.is_running():
                raise SystemExit(f"the worker did not finish:\n{worker.log_tail()}")
            time.sleep(0.05)
        done_after, wall = processed(), time.monotonic() - started
        cpu_after = [cpu_seconds([worker.pid]), cpu_seconds(recommender),
                     cpu_seconds(kafka.pids), cpu_seconds(redis_pids)]
        redis_after = redis_snapshot(redis_ports)
        used = [(after or 0.0) - (before or 0.0) for before, after in zip(
            cpu_before, cpu_after, strict=True)]
        nodes = list(redis_after.calls)
        profiles = len({event.get("customer_id") or f"anon:{event.get('anonymous_id')}"
                        for event in events})
        return Measured(
            topology=topology, events=int(done_after - done_before), wall_s=wall,
            worker_cpu_s=used[0], recommender_cpu_s=used[1], broker_cpu_s=used[2],
            redis_cpu_s={n: redis_after.cpu[n] - redis_before.cpu[n] for n in nodes},
            redis_calls={n: redis_after.calls[n] - redis_before.calls[n] for n in nodes},
            redis_net_in={n: redis_after.net_in[n] - redis_before.net_in[n] for n in nodes},
            redis_net_out={n: redis_after.net_out[n] - redis_before.net_out[n] for n in nodes},
            redis_role=redis_after.role,
            redis_memory=sum(value - memory_before.get(node, value)
                             for node, value in redis_after.memory.items()
                             if redis_after.role[node] == "master"),
            profiles=profiles, tenant_node=_node_of(redis_ports, "{default}"),
            kafka_bytes_per_event=stored / settings.replication_factor / len(events),
            replication_factor=settings.replication_factor,
            payload_bytes=sum(len(_json(event)) for event in events) / len(events),
            bytes_per_event_id=id_bytes, broker_idle_cpu=broker_idle)


def dedupe_bytes_per_id(port: int, events: list[dict[str, Any]], ids: int = 10_000) -> float:
    """``MEMORY USAGE`` per member of a sorted set of ``ids`` event ids scored by event time,
    as a customer's dedupe set holds them (a key of the node's own slot on a cluster)."""
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        key = f"capacity-probe-{uuid.uuid4().hex}"
        if client.info("cluster").get("cluster_enabled"):
            mine = next(int(start) for start, end, *_ in _own_slots(client))
            key = f"{{{_tag_for_slot(mine)}}}:capacity-probe"
        sample = events[:ids]
        for start in range(0, len(sample), 1000):
            client.zadd(key, {event["event_id"]: 1_700_000_000_000 + n for n, event
                              in enumerate(sample[start:start + 1000], start)})
        used = int(client.memory_usage(key, samples=0) or 0)
        client.delete(key)
        return used / len(sample)
    finally:
        client.close()


def _own_slots(client: redis.Redis) -> list[tuple[int, int]]:
    """The slot ranges this cluster node serves."""
    myself = next(row for row in client.execute_command("CLUSTER NODES").values()
                  if "myself" in row["flags"])
    return [(int(start), int(end)) for start, end in myself["slots"]]


def _tag_for_slot(slot: int) -> str:
    """A hash tag whose key slot is ``slot``."""
    return next(tag for n in range(1_000_000) if key_slot((tag := f"p{n}").encode()) == slot)


def _node_of(ports: list[int], key: str) -> str:
    """The master serving ``key``'s hash slot (the only node when there is one)."""
    if len(ports) == 1:
        return f"127.0.0.1:{ports[0]}"
    slot = key_slot(key.encode())
    client = redis.Redis(port=ports[0], socket_timeout=5)
    try:
        table = client.execute_command("CLUSTER NODES")
    finally:
        client.close()
    for address, row in table.items():
        if "master" in row["flags"] and any(int(start) <= slot <= int(end)
                                            for start, end in row["slots"]):
            return str(address)
    raise RuntimeError(f"no master serves {key}")


def _json(event: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(event)


# -- the report ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--topology", choices=["single", "cluster", "both"], default="both")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    before = speed_check_ms()
    runs = []
    with tempfile.TemporaryDirectory(prefix="crm-capacity-") as tmp:
        for topology in (["single", "cluster"] if args.topology == "both" else [args.topology]):
            runs.append(run_topology(topology, args, Path(tmp)))
    write(runs, args, (before, speed_check_ms()))


if __name__ == "__main__":
    main()
