"""How many segments a shop is served, and how well they match its planted groups, when
only the batch boundaries differ.

The segmenter chooses the number of segments from time to time, on the customers it has
seen so far (:mod:`online_models.segments`). A worker's batches fall where traffic puts
them, so the same history can end with 3 segments in one run and 5 in the next: the
quality report's segment rows are one draw of that lottery. This benchmark replays each
quality family (and our simulator) through the worker's batch function in process, against
a real redis-server, in batches of random sizes (50 to 2,000 events), several times each.
It reports every choice of the number (the refit it came at, the customers in the sample,
the number chosen) and the adjusted Rand index of the final segments against the planted
groups: the segment the final centres give each customer's latest behaviour, as a read
scored now would serve it.

Judge a change to the segmenter here on shops it was not tuned to: ``--shop-seed`` draws
other customers from the same families.

Run ``python -m load_tests.bench_segments [--batchings N] [--shop-seed S] [--family F ...]``;
writes load_tests/results/SEGMENTS.md and SEGMENTS.png. Like ``bench_pipeline``, it drives
the worker's own batch function in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import orjson
from sklearn.metrics import adjusted_rand_score
from tqdm import tqdm

from agents.batch import process_batch
from load_tests.bench_pipeline import messages_of, runtime_without_broker
from load_tests.quality.families import FAMILIES, Shop, generate_shop
from load_tests.quality.family_run import START
from load_tests.quality.report import TARGETS
from load_tests.quality.simulated import simulated_shop
from load_tests.report import (
    image,
    pyplot,
    reproduce_line,
    run_sentence,
    save_plot,
    table,
    title,
    write_report,
)
from online_models.segments import Segmenter, TenantSegments
from simulator import TOPIC_BY_TYPE
from stream.devstack import RedisServer
from stream.settings import Settings

RESULTS = Path(__file__).parent / "results" / "SEGMENTS.md"
#: The quality report's shop size, for the families and (smaller than there) our simulator.
CUSTOMERS, DAYS = 600, 120.0
#: Events per batch, drawn uniformly: a worker under light traffic takes a few dozen, a
#: backlog fills the batch.
BATCH_SIZES = (50, 2000)


@dataclass(frozen=True)
class Choice:
    """One choice of the number of segments."""

    refit: int
    sample: int
    segments: int


@dataclass(frozen=True)
class Replay:
    shop: str
    batching: int
    planted: int
    choices: tuple[Choice, ...]
    segments: int
    ari: float


def ari_target(shop: str) -> float:
    """The quality report's segment target for ``shop``."""
    return TARGETS["segments_ari_simulated" if shop == "simulated" else "segments_ari"]


def shop_of(family: str, seed: int) -> Shop:
    if family == "simulated":
        return simulated_shop(customers=CUSTOMERS, days=DAYS, seed=seed)
    return generate_shop(family, customers=CUSTOMERS, days=DAYS, seed=seed, start=START)


def random_batches(count: int, seed: int) -> Iterator[slice]:
    """Consecutive slices of ``count`` messages, of sizes drawn from :data:`BATCH_SIZES`.

    >>> [s.stop - s.start for s in random_batches(5000, seed=1)][:3]
    [325, 1215, 1785]
    """
    rng = random.Random(seed)
    start = 0
    while start < count:
        stop = min(count, start + rng.randint(*BATCH_SIZES))
        yield slice(start, stop)
        start = stop


@contextmanager
def watching_segments() -> Iterator[tuple[list[Choice], dict[str, Mapping[str, float]]]]:
    """Record each choice of the number of segments, and each customer's latest behaviour
    vector as the segmenter learnt it, while the block runs."""
    choices: list[Choice] = []
    latest: dict[str, Mapping[str, float]] = {}
    choose: Callable[..., int] = Segmenter._choose_k
    learn: Callable[..., None] = TenantSegments.learn

    def chosen(segmenter: Segmenter, z: np.ndarray, distinct: int) -> int:
        number = choose(segmenter, z, distinct)
        choices.append(Choice(segmenter.refits, len(z), number))
        return number

    def learnt(segments: TenantSegments, tenant: str, customer_id: str,
               vector: Mapping[str, float]) -> None:
        latest[customer_id] = vector
        learn(segments, tenant, customer_id, vector)

    with mock.patch.object(Segmenter, "_choose_k", chosen), \
            mock.patch.object(TenantSegments, "learn", learnt):
        yield choices, latest


async def replay(settings: Settings, shop: Shop, batching: int) -> Replay:
    """``shop`` through the batch function in random batches (``batching`` seeds their
    sizes); the choices made and the final segments' adjusted Rand index."""
    runtime = runtime_without_broker(settings)
    worker = runtime.worker
    worker.lists_in_worker = False  # recommendations play no part in segments
    await runtime.store.redis.flushdb()
    messages = messages_of([(TOPIC_BY_TYPE[event["type"]], orjson.dumps(event))
                            for event in shop.events])
    try:
        with watching_segments() as (choices, latest):
            for batch in random_batches(len(messages), batching):
                await process_batch(worker, messages[batch])
    finally:
        await runtime.store.close()
    segmenter = runtime.bundle.segments.of(shop.tenant)
    customers = [c for c in sorted(latest) if c in shop.truth]
    served = [segmenter.assign(latest[c]) for c in customers]
    planted = [shop.truth[c].group for c in customers]
    return Replay(shop=shop.family, batching=batching, planted=len(shop.groups),
                  choices=tuple(choices), segments=len(segmenter.centres),
                  ari=float(adjusted_rand_score(planted, [-1 if s is None else s
                                                          for s in served])))


def summary_rows(replays: Sequence[Replay]) -> list[list[object]]:
    """Per shop: the planted groups, the numbers served (how often each) and the adjusted
    Rand index over the replays.

    >>> rows = summary_rows([Replay("a", 1, 3, (), 3, 0.75), Replay("a", 2, 3, (), 5, 0.57)])
    >>> rows[0]
    ['a', 3, '3 (1), 5 (1)', '0.570', '0.660', '0.750']
    """
    rows: list[list[object]] = []
    for shop in dict.fromkeys(r.shop for r in replays):
        runs = [r for r in replays if r.shop == shop]
        served = Counter(r.segments for r in runs)
        scores = [r.ari for r in runs]
        rows.append([shop, runs[0].planted,
                     ", ".join(f"{k} ({n})" for k, n in sorted(served.items())),
                     f"{min(scores):.3f}", f"{statistics.median(scores):.3f}",
                     f"{max(scores):.3f}"])
    return rows


def plot(replays: Sequence[Replay], path: Path) -> None:
    plt = pyplot()
    shops = list(dict.fromkeys(r.shop for r in replays))
    figure, axis = plt.subplots(figsize=(8, 4))
    for x, shop in enumerate(shops):
        runs = [r for r in replays if r.shop == shop]
        axis.hlines(ari_target(shop), x - 0.4, x + 0.4, colors="grey", linestyles="dashed",
                    linewidth=1, label="target" if x == 0 else None)
        for offset, run in enumerate(runs):
            dx = (offset - (len(runs) - 1) / 2) * 0.18
            correct = run.segments == run.planted
            axis.scatter(x + dx, run.ari, s=40, color="tab:green" if correct else "tab:orange",
                         zorder=3)
            axis.annotate(str(run.segments), (x + dx, run.ari), textcoords="offset points",
                          xytext=(-3, 6), fontsize=8)
    axis.set_xticks(range(len(shops)), [s.replace("_", " ") for s in shops])
    axis.set_ylabel("adjusted Rand index vs planted groups")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title("Segments served after each replay (label: number of segments; "
                   "green: the planted number)", fontsize=9)
    save_plot(figure, path)


def report(replays: Sequence[Replay], *, shop_seed: int, elapsed_s: float) -> str:
    png = RESULTS.with_suffix(".png")
    plot(replays, png)
    lines = title("Segments: the number served, and its match, when only the batches differ")
    lines += [f"{run_sentence()}, in {elapsed_s / 60:.1f} minutes. Each shop ({CUSTOMERS} "
              f"customers over {DAYS:g} days, shop seed {shop_seed}) went through the worker's "
              f"batch function in process, with a real redis-server, in batches of "
              f"{BATCH_SIZES[0]:,} to {BATCH_SIZES[1]:,} events drawn at random; only that "
              "draw (the batching) differs between the replays of a shop. The adjusted Rand "
              "index compares the final segments (the final centres on each customer's latest "
              "behaviour) with the planted groups.", ""]
    lines += table(["shop", "planted groups", "segments served (replays)", "ARI min",
                    "ARI median", "ARI max"], summary_rows(replays), align="lrlrrr")
    lines += ["", image("ARI and number of segments per replay", png), "",
              "Every replay, with each choice of the number (refit: choice) on the way:", ""]
    lines += table(["shop", "batching", "choices (refit: customers in the sample → number)",
                    "served", "ARI"],
                   [[r.shop, r.batching,
                     "; ".join(f"{c.refit}: {c.sample} → {c.segments}" for c in r.choices),
                     r.segments, f"{r.ari:.3f}"] for r in replays], align="lrlrr")
    lines += ["", reproduce_line(f"python -m load_tests.bench_segments --shop-seed {shop_seed}")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--family", action="append", choices=[*FAMILIES, "simulated"],
                        help="a shop to replay (repeat for several; default: all)")
    parser.add_argument("--batchings", type=int, default=4,
                        help="replays of each shop, each with its own batch sizes")
    parser.add_argument("--shop-seed", type=int, default=11,
                        help="the shops' seed (the quality report's is 11)")
    args = parser.parse_args(argv)
    shops = args.family or [*FAMILIES, "simulated"]
    started = time.monotonic()
    replays: list[Replay] = []
    with tempfile.TemporaryDirectory(prefix="crm-segments-") as work:
        server = RedisServer(work_dir=Path(work), persist=False)
        try:
            settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url=server.start(),
                                partitions=3, checkpoint_dir=Path(work) / "checkpoints")
            with tqdm(total=len(shops) * args.batchings, desc="replays", unit="replay") as bar:
                for name in shops:
                    shop = shop_of(name, args.shop_seed)
                    for batching in range(1, args.batchings + 1):
                        bar.set_postfix_str(f"{name} #{batching}")
                        replays.append(asyncio.run(replay(settings, shop, batching)))
                        bar.update()
        finally:
            server.stop()
    write_report(RESULTS, report(replays, shop_seed=args.shop_seed,
                                 elapsed_s=time.monotonic() - started))


if __name__ == "__main__":
    main()
