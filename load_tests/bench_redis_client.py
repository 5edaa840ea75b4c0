"""What a pipelined Redis command costs the worker's client: redis-py's pipeline against
:class:`~feature_store.client.LeanPipeline`, on the same connection class (hiredis packing).

The pipeline is shaped like a worker batch's score writes (per customer: a profile HSET, two
ZADDs, a ZCOUNT and an SADD) plus a read with a reply callback (HGETALL), in two sizes: a
large one (what a backlog batch sends; the cost per command counts) and a small one (a batch
at 2,000 events/s touches about four customers; the fixed cost of a round trip counts). The
two pipelines alternate, several rounds, against a redis-server started here; the figure is
client CPU (``time.process_time``, so the server's work is not in it), the median round.

Run ``python -m load_tests.bench_redis_client``; writes load_tests/results/REDIS_CLIENT.md.

It measures :mod:`feature_store.client` itself, in this process, so it imports it (an
exception the import-linter contract names).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from tqdm import tqdm

from feature_store.client import LeanPipeline, connect
from load_tests.measure import speed_check_ms
from load_tests.report import (
    reproduce_line,
    run_sentence,
    speed_check_line,
    table,
    title,
    write_report,
)
from stream.devstack import RedisServer

RESULTS = Path(__file__).parent / "results" / "REDIS_CLIENT.md"
COMMANDS_PER_CUSTOMER = 6


def _queue_batch(pipe: Pipeline, customers: int) -> None:
    for number in range(customers):
        customer = f"c{number}"
        profile = f"t:{{{customer}}}:profile"
        pipe.hset(profile, mapping={"churn_probability": "0.123456", "segment": 2,
                                    "segment_label": "loyal", "clv": "123.45",
                                    "model_version": "v1+100"})
        pipe.zadd("t:rank:churn", {customer: 0.123456})
        pipe.zadd("t:rank:clv", {customer: 123.45})
        pipe.zcount("t:rank:clv", "-inf", 123.45)
        pipe.sadd("t:segments:members:2", customer)
        pipe.hgetall(profile)


async def _cpu_per_pipeline_us(client: aioredis.Redis, lean: bool, customers: int,
                               batches: int) -> float:
    started = time.process_time()
    for _ in range(batches):
        pipe = (LeanPipeline(client.connection_pool, client.response_callbacks, False, None)
                if lean else Pipeline(client.connection_pool, client.response_callbacks,
                                      False, None))
        async with pipe:
            _queue_batch(pipe, customers)
            await pipe.execute()
    return (time.process_time() - started) / batches * 1e6


#: (shape, pipeline) -> client CPU µs per pipeline, one figure per round.
Figures = dict[tuple[int, str], list[float]]
PIPELINES = ("redis-py pipeline", "LeanPipeline")


async def _measure(redis_url: str, sizes: list[int], batches: int, rounds: int) -> Figures:
    client = connect(redis_url, socket_timeout=None)
    assert isinstance(client, aioredis.Redis), "LeanPipeline is a single node's"
    figures: Figures = {(size, name): [] for size in sizes for name in PIPELINES}
    try:
        await client.flushdb()
        await _cpu_per_pipeline_us(client, True, max(sizes), 5)  # connect, fill the keys
        for _ in tqdm(range(rounds), desc="rounds", unit="round"):
            for size in sizes:
                # As many commands per round for each size.
                count = batches * max(sizes) // size
                for name in PIPELINES:
                    figures[(size, name)].append(await _cpu_per_pipeline_us(
                        client, name == "LeanPipeline", size, count))
    finally:
        await client.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100,
                        help="customers per large pipeline (six commands each)")
    parser.add_argument("--small", type=int, default=4,
                        help="customers per small pipeline (a batch at 2,000 events/s)")
    parser.add_argument("--batches", type=int, default=50, help="large pipelines per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sizes = [args.customers, args.small]
    server = RedisServer(work_dir=Path(tempfile.mkdtemp(prefix="crm-bench-")), persist=False)
    try:
        speed_before = speed_check_ms()
        figures = asyncio.run(_measure(server.start(), sizes, args.batches, args.rounds))
        speed_ms = (speed_before, speed_check_ms())
    finally:
        server.stop()
    rows = []
    for size in sizes:
        commands = size * COMMANDS_PER_CUSTOMER
        baseline = statistics.median(figures[(size, PIPELINES[0])])
        for name in PIPELINES:
            values = figures[(size, name)]
            median = statistics.median(values)
            rows.append([name, commands, f"{median:.0f}", f"{median / commands:.2f}",
                         f"{min(values):.0f}-{max(values):.0f}", f"{median / baseline:.2f}"])
    write_report(RESULTS, "\n".join([
        *title("Pipelined Redis commands: client CPU"),
        f"{run_sentence()}: {args.rounds} alternating rounds, each "
        f"{args.batches} pipelines of {args.customers * COMMANDS_PER_CUSTOMER} commands and as "
        f"many commands in pipelines of {args.small * COMMANDS_PER_CUSTOMER} (a worker batch's "
        "score writes and a profile read), both on the worker's connection class (hiredis "
        "packing), against a local redis-server.", "",
        *table(["pipeline", "commands", "client CPU µs per pipeline (median)", "µs per command",
                "range per pipeline", "ratio to redis-py"], rows, align="lrrrrr"), "",
        speed_check_line(*speed_ms), "",
        reproduce_line(f"python -m load_tests.bench_redis_client --customers {args.customers} "
                       f"--small {args.small} --batches {args.batches} --rounds {args.rounds}"),
        ""]))


if __name__ == "__main__":
    main()
