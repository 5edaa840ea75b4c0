"""What Kafka transactions would add to a batch's alerts: idempotent flush vs commit.

The worker publishes a batch's alerts with an idempotent producer and waits for the broker
(``flush``) before it records the batch's progress in Redis. A transactional producer would
instead begin a transaction, produce, and commit it, so a ``read_committed`` consumer never
sees the alerts of a batch that died before its commit. This measures, against a real broker,
the time from the first produce to the broker's answer for both, per batch, for batches of
a few alerts (what a worker publishes: mostly none, sometimes one or two, rarely ten).

Run ``python -m load_tests.bench_transactions [--broker embedded|apache] [--batches 300]``
(or ``--bootstrap HOST:PORT`` for a running broker). The two producers alternate in blocks of
``--block`` batches, so both see the same moments of a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from load_tests.measure import percentile, speed_check_ms
from load_tests.report import speed_check_line

PAYLOAD = b'{"alert_id": "al_0123456789abcdef01234567", "kind": "churn_risk", ' + b"x" * 600 + b"}"


@dataclass
class Timings:
    mode: str
    size: int
    milliseconds: list[float]

    def row(self, baseline: Timings | None) -> str:
        median = statistics.median(self.milliseconds)
        added = "" if baseline is None else (
            f"+{median - statistics.median(baseline.milliseconds):.2f} ms "
            f"(x{median / statistics.median(baseline.milliseconds):.1f})")
        return (f"| {self.size} | {self.mode} | {len(self.milliseconds)} | {median:.2f} | "
                f"{percentile(self.milliseconds, 99):.2f} | "
                f"{statistics.fmean(self.milliseconds):.2f} | {added} |")


def idempotent_batch(producer: Producer, topic: str, size: int) -> float:
    """The worker's way: produce, then wait for every acknowledgement (ms)."""
    started = time.perf_counter()
    for number in range(size):
        producer.produce(topic, value=PAYLOAD, key=f"c-{number}")
    producer.flush(30)
    return (time.perf_counter() - started) * 1000


def transactional_batch(producer: Producer, topic: str, size: int) -> float:
    """Begin, produce, commit (ms): read_committed consumers see the batch only now."""
    started = time.perf_counter()
    producer.begin_transaction()
    for number in range(size):
        producer.produce(topic, value=PAYLOAD, key=f"c-{number}")
    producer.commit_transaction(30)
    return (time.perf_counter() - started) * 1000


def measure(bootstrap: str, *, sizes: list[int], batches: int, block: int,
            partitions: int) -> list[tuple[Timings, Timings | None]]:
    topic = f"bench-txn-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    common = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
              "linger.ms": 1}
    idempotent = Producer(common)
    transactional: Producer | None = Producer(
        {**common, "transactional.id": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        transactional.init_transactions(30)  # type: ignore[union-attr]
    except KafkaException as error:
        print(f"transactions unavailable on this broker: {error}")
        transactional = None
    idempotent_batch(idempotent, topic, 1)  # connections and producer ids first
    if transactional is not None:
        transactional_batch(transactional, topic, 1)
    results: list[tuple[Timings, Timings | None]] = []
    for size in sizes:
        plain = Timings("idempotent, flush", size, [])
        txn = Timings("transactional, commit", size, []) if transactional is not None else None
        while len(plain.milliseconds) < batches:
            plain.milliseconds += [idempotent_batch(idempotent, topic, size)
                                   for _ in range(block)]
            if txn is not None and transactional is not None:
                txn.milliseconds += [transactional_batch(transactional, topic, size)
                                     for _ in range(block)]
        results.append((plain, txn))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["embedded", "apache"], default="embedded")
    parser.add_argument("--bootstrap", help="a running broker instead of one started here")
    parser.add_argument("--batches", type=int, default=300, help="batches per size and mode")
    parser.add_argument("--block", type=int, default=25, help="batches before switching mode")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-txn-", ignore_cleanup_errors=True) as tmp, \
            ExitStack() as stack:
        bootstrap = args.bootstrap
        if bootstrap is None and args.broker == "apache":
            from stream.apache_kafka import ApacheKafka

            kafka = ApacheKafka(data_dir=Path(tmp) / "apache-kafka")
            bootstrap = kafka.start()
            stack.callback(kafka.stop)
        elif bootstrap is None:
            from stream.devstack import EmbeddedBroker

            broker = EmbeddedBroker(work_dir=Path(tmp))
            bootstrap = broker.start()
            stack.callback(broker.stop)
        before = speed_check_ms()
        results = measure(bootstrap, sizes=args.sizes, batches=args.batches, block=args.block,
                          partitions=args.partitions)
        after = speed_check_ms()
    where = args.bootstrap or args.broker
    lines = [f"Broker: {where}; {args.partitions} partitions; alerts of {len(PAYLOAD)} bytes, "
             f"keyed over the partitions; modes alternated every {args.block} batches.", "",
             "| alerts per batch | producer | batches | median ms | p99 ms | mean ms | "
             "added by the transaction (median) |",
             "|---:|---|---:|---:|---:|---:|---|"]
    for plain, txn in results:
        lines.append(plain.row(None))
        if txn is not None:
            lines.append(txn.row(plain))
    lines += ["", speed_check_line(before, after)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
