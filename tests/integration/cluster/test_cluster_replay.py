"""On three Kafka brokers and a Redis Cluster, the features stay exact under the worst a
stream and a deployment can do: duplicates, disorder and malformed events, while two workers
share the partitions and rebalance, a broker is lost, or a Redis master fails over.

Each test replays a simulated shop through Kafka (5% duplicates, 10% out of order, 2%
malformed) and then holds every profile in the cluster to an offline recomputation from the
same events, and ``crm.deadletter`` to exactly the malformed ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from stream.apache_kafka import ApacheKafka
from stream.devstack import LocalRedisCluster
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings, kafka_client_config
from tests.helpers import wait_for
from tests.integration.cluster.support import Replay, events_processed_by


def test_two_workers_and_their_rebalances_keep_every_feature_exact(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    """Verify that features are exact when a second worker joins mid-stream (a rebalance
    shares the partitions), both work, and the first is then SIGKILLed (a rebalance hands
    its partitions to the second); and that the customers of both were served one set of
    segments, whose sizes count each of them once."""
    replay = Replay.build(settings, events=40_000, customers=2000)
    # The shop sends about 1,000 events/s for 40 s: a worker drains a backlog of this size
    # before a second one has started, so a stream sent up front leaves nothing to share.
    sender = threading.Thread(target=replay.send, kwargs={"pace_s": 0.5, "chunk": 500},
                              daemon=True)  # a failed wait must not wait for it too
    sender.start()
    first_port, second_port = free_port(), free_port()
    first = start_worker("worker-1", worker_metrics_port=first_port, worker_name="worker-1")
    replay.wait_until_processed(0.2, alive=[first])
    second = start_worker("worker-2", worker_metrics_port=second_port, worker_name="worker-2")
    # Both take part: the second has processed some of the stream, the first goes on too.
    wait_for(lambda: events_processed_by(second_port) > 0, timeout=120,
             what="the second worker to get partitions and process events", interval=0.2,
             alive=[first, second])
    shared_from = events_processed_by(first_port)
    wait_for(lambda: events_processed_by(first_port) > shared_from
             and events_processed_by(second_port) > 1000, timeout=120,
             what="both workers to process events after the rebalance", interval=0.2,
             alive=[first, second])
    placed_by, placed, _, _ = replay.segments()
    print(f"both working: {placed} customers with a segment, of segmenters {placed_by}")
    assert placed and len(placed_by) == 1, "the two workers' customers share segments"
    first.kill()  # SIGKILL mid-stream: no shutdown, no final commit
    sender.join()
    assert replay.delivered == len(replay.stream), "every message must be delivered"
    replay.wait_until_caught_up(alive=[second])
    profiles = replay.assert_exact()
    print(f"{len(replay.stream)} messages, {profiles} profiles exact; worker-2 processed "
          f"{events_processed_by(second_port)}")
    # Sizes are published on the segments' worker's telemetry ticks: wait for one.
    def sized_as_placed() -> bool:
        _, placed, _, sized = replay.segments()
        return placed == sized

    wait_for(sized_as_placed, timeout=60, alive=[second],
             what="the published sizes to count the customers with a segment")
    placed_by, placed, published_by, sized = replay.segments()
    print(f"caught up: {placed} customers with a segment, of segmenters {placed_by}; "
          f"published of {published_by}, sizes summing to {sized}")
    assert placed > profiles // 2 and placed == sized
    assert len(published_by) == 1 and placed_by == published_by


def test_a_kafka_broker_lost_mid_stream_loses_nothing(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_cluster: ApacheKafka
) -> None:
    """Verify that SIGKILLing the broker leading the most input partitions while the shop
    sends and the worker consumes loses no event and counts none twice (replication factor
    3, min.insync.replicas 2, idempotent producers)."""
    replay = Replay.build(settings, events=25_000, customers=1200, seed=7)
    worker = start_worker()
    admin = AdminClient(kafka_client_config(settings))
    topics = admin.list_topics(timeout=10).topics
    leaders = [partition.leader for name, topic in topics.items()
               if name.startswith(settings.topic_prefix) for partition in topic.partitions.values()]
    victim = max(set(leaders), key=leaders.count)
    killed = threading.Event()

    def kill_half_way(sent: int) -> None:
        if sent >= len(replay.stream) // 2 and not killed.is_set():
            kafka_cluster.kill_broker(victim)
            killed.set()

    replay.send(pace_s=0.1, during=kill_half_way)
    assert killed.is_set()
    replay.wait_until_caught_up(alive=[worker])
    profiles = replay.assert_exact()
    kafka_cluster.start_broker(victim)
    print(f"broker {victim} killed half way; {len(replay.stream)} messages, "
          f"{profiles} profiles exact")


def test_a_redis_master_lost_mid_stream_fails_over_and_the_worker_goes_on(
    settings: Settings, start_worker: Callable[..., ManagedProcess],
    redis_cluster: LocalRedisCluster
) -> None:
    """Verify that SIGKILLing a Redis master mid-stream costs nothing: its replica is
    promoted, the worker's cluster client finds it and goes on (the same worker process,
    never restarted), and every feature is exact (each batch waits for its feature updates
    to reach the replica before it goes on)."""
    replay = Replay.build(settings, events=25_000, customers=1200, seed=11)
    replay.send()
    worker = start_worker()
    replay.wait_until_processed(0.3, alive=[worker])
    master = redis_cluster.master(0)
    master.process.kill()
    redis_cluster.wait_until_healthy(timeout=60, with_replicas=False)
    assert redis_cluster.master(0).port != master.port, "a replica took over the slots"
    replay.wait_until_caught_up(alive=[worker])
    profiles = replay.assert_exact()
    print(f"master on port {master.port} killed at 30%; {len(replay.stream)} messages, "
          f"{profiles} profiles exact")
