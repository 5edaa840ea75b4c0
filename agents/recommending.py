"""The recommender learns and lists in a low-priority process of its own, one per worker.

Learning every product interaction and listing the top-N of each customer who interacted
is about a quarter of a busy worker's batch path (``load_tests/bench_pipeline.py``). In the
worker's event loop it held the GIL between batches, so each batch's alerts waited on the
previous batch's lists; at 2,000 events/s that alone doubled the p99 from event to alert.
No alert depends on the recommender, so it runs in a child process at a lower CPU priority
(``os.nice``, and the default policy under a real-time worker): under load the lists get a
little older instead of the alerts getting later.

The worker still decides what there is to do, from what it read for scoring anyway: which
interactions to learn (new events only), whose list is due, and who was erased. It sends
that as :class:`RecommendationWork` through a queue; the child (:func:`serve`) applies it
in order, writes the lists to Redis, and checkpoints its recommender beside the worker's
models (``recommender-*.ckpt``, see :mod:`agents.checkpoints`). A child that falls more
than ``recommender_max_backlog`` behind gets no new interactions or lists until it catches
up (counted in ``crm_worker_recommender_shed_total``), so it cannot grow the worker's
memory without bound; erasures are never shed.

:func:`apply_work` is also the in-process path (``recommender_process`` off), which the
unit tests and the pipeline benchmark use to keep the whole model cost in one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Set
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import Any, NamedTuple

import orjson

from agents.checkpoints import CheckpointStore
from agents.collector import configure_worker_process, freeze_loaded_models
from feature_store.recommendations import WRITE_FAILED, RecommendationLists
from online_models import CheckpointError, Recommender, decode_checkpoint, encode_checkpoint
from stream.logs import configure_logging
from stream.metrics import RECOMMENDER_SHED
from stream.processes import run_in_background
from stream.settings import Settings

log = logging.getLogger(__name__)

RECOMMENDATIONS = 10
#: How often the child reports its progress and metrics to the worker, at most.
REPORT_INTERVAL_S = 1.0
#: How long the child waits for work before it checks on its parent.
POLL_S = 1.0
#: After SIGTERM, the child stops once no work has come for this long.
DRAIN_S = 0.2
#: A child that died is restarted at most this often (a crash loop must not eat the CPU).
RESTART_INTERVAL_S = 5.0


class Interaction(NamedTuple):
    """One product viewed or carted, or an order's products bought, for the recommender.

    ``recent`` are the customer's recent products when it happened; ``exclude`` what their
    list excluded before an order (the products they had bought), for the hit-rate.
    """

    tenant: str
    customer_id: str
    products: tuple[str, ...]
    kind: str
    at_ms: int
    recent: list[str]
    exclude: Set[str] = frozenset()


@dataclass
class RecommendationWork:
    """What the recommender has to do after some batches, applied in this order: learn the
    ``interactions``, forget the ``erased`` customers (and visitors merged into a customer:
    nothing stays under their ids either), list the ``due`` customers' top-N.

    ``due`` maps (tenant, customer) to what their list excludes (products bought) and
    their recent products.
    """

    interactions: list[Interaction] = field(default_factory=list)
    due: dict[tuple[str, str], tuple[set[str], list[str]]] = field(default_factory=dict)
    erased: list[tuple[str, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Units of backlog: interactions to learn plus lists to make."""
        return len(self.interactions) + len(self.due)

    def __bool__(self) -> bool:
        return bool(self.interactions or self.due or self.erased)


def apply_work(recommender: Recommender, work: RecommendationWork
               ) -> dict[tuple[str, str], bytes]:
    """Teach ``recommender`` the work's interactions in order, forget its erased customers,
    and answer the due customers' lists as JSON, by (tenant, customer)."""
    for interaction in work.interactions:
        if interaction.kind == "purchase":
            recommender.learn_order(interaction.customer_id, interaction.products,
                                    interaction.at_ms, recent=interaction.recent,
                                    exclude=interaction.exclude)
        else:
            recommender.learn(interaction.customer_id, interaction.products[0],
                              interaction.kind, interaction.at_ms, recent=interaction.recent)
    erased = set(work.erased)
    for _, customer in erased:
        recommender.forget(customer)
    return {
        (tenant, customer): orjson.dumps([
            {"product_id": item, "score": round(score, 6), "source": source}
            for item, score, source in recommender.top_n(
                customer, RECOMMENDATIONS, exclude=bought, recent=recent)])
        for (tenant, customer), (bought, recent) in work.due.items()
        if (tenant, customer) not in erased
    }


@dataclass(frozen=True)
class RecommenderReport:
    """The child's progress, for the worker's backlog and telemetry."""

    processed: int
    model_version: str
    example_count: int
    metrics: dict[str, Any]


# -- the child ---------------------------------------------------------------------------------


def _checkpoints(settings: Settings, worker_name: str, kind: str) -> CheckpointStore:
    return CheckpointStore(directory=settings.checkpoint_dir, app_id=settings.app_id,
                           worker_name=worker_name, kind=kind)


def restore_recommender(settings: Settings, worker_name: str) -> Recommender:
    """The newest recommender checkpoint (this worker's, else the app's); else the one in
    the newest models checkpoint (written before the recommender had a process of its own);
    else a new one."""
    restored = _checkpoints(settings, worker_name, "recommender").load_newest(
        lambda data: decode_checkpoint(data, Recommender))
    if restored is not None:
        return restored
    models = _checkpoints(settings, worker_name, "models").load_latest()
    if models is not None and models.recommender.example_count:
        return models.recommender
    return Recommender()


def recommender_checkpoint(recommender: Recommender) -> bytes:
    version, count = recommender.model_version, recommender.example_count
    return encode_checkpoint(recommender, version=version,
                             model_versions={"recommendations": version},
                             example_counts={"recommendations": count})


def serve(inbox: Any, outbox: Any, settings: Settings, worker_name: str,
          checkpoint_phase_s: float) -> None:
    """The child's main loop: apply work in order until told to stop or orphaned.

    It stops on ``None`` from the worker, on SIGTERM once the work already queued is done,
    or when the worker is gone (SIGKILL leaves the child orphaned; it notices within
    :data:`POLL_S`), and checkpoints first in every case. Ctrl-C reaches the whole process
    group; the worker stops the child itself.
    """
    configure_logging(settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: terminated.append(signum))
    run_in_background(settings.recommender_nice)
    outbox.cancel_join_thread()  # never hang at exit on a worker that stopped reading
    parent = os.getppid()
    checkpoints = _checkpoints(settings, worker_name, "recommender")
    configure_worker_process()
    recommender = restore_recommender(settings, worker_name)
    freeze_loaded_models()
    # A reply timeout (unlike the worker's client): a hung Redis costs lists, not the child.
    lists = RecommendationLists(settings.redis_url, timeout_s=settings.redis_deadline_s,
                                cluster=settings.redis_cluster)
    processed = 0
    reported_at = time.monotonic()
    # The first checkpoint at the phase its worker chose (half an interval from its own), so
    # the two never serialise at once; then every interval.
    checkpointed_at = reported_at + checkpoint_phase_s - settings.checkpoint_interval_s
    log.info("recommender process started (pid %d, nice %d, %s)", os.getpid(),
             settings.recommender_nice, recommender.model_version)
    while os.getppid() == parent:
        try:
            work = inbox.get(timeout=DRAIN_S if terminated else POLL_S)
        except queue.Empty:
            if terminated:
                break
            work = RecommendationWork()
        if work is None:
            break
        try:
            lists.write(apply_work(recommender, work), work.erased)
        except WRITE_FAILED:  # the lists come again when next due
            log.exception("recommendation lists not written")
        processed += work.size
        now = time.monotonic()
        if now - reported_at >= REPORT_INTERVAL_S:
            reported_at = now
            outbox.put(RecommenderReport(processed, recommender.model_version,
                                         recommender.example_count,
                                         recommender.metrics_dict()))
        if now - checkpointed_at >= settings.checkpoint_interval_s:
            checkpointed_at = now
            _checkpoint(checkpoints, recommender)
    _checkpoint(checkpoints, recommender)
    lists.close()
    log.info("recommender process stopped")


def _checkpoint(checkpoints: CheckpointStore, recommender: Recommender) -> None:
    try:
        path = checkpoints.save(recommender_checkpoint(recommender))
    except (OSError, CheckpointError):
        log.exception("recommender checkpoint failed")
        return
    log.info("checkpointed %s to %s", recommender.model_version, path)


# -- the worker's side -------------------------------------------------------------------------


class RecommenderProcess:
    """The worker's handle on its recommender process: submit work, read reports, stop."""

    def __init__(self, settings: Settings, worker_name: str, *,
                 checkpoint_phase_s: float | None = None) -> None:
        self.settings = settings
        self.worker_name = worker_name
        #: When the child's first checkpoint is due after it starts (default: one interval).
        self.checkpoint_phase_s = (settings.checkpoint_interval_s if checkpoint_phase_s is None
                                   else checkpoint_phase_s)
        self._context = multiprocessing.get_context("spawn")  # fork would copy the loop
        self._started_at = 0.0
        self._held_erasures: list[tuple[str, str]] = []
        self._start()

    def _start(self) -> None:
        self.inbox = self._context.Queue()
        self.outbox = self._context.Queue()
        self.process: SpawnProcess = self._context.Process(
            target=serve, args=(self.inbox, self.outbox, self.settings, self.worker_name,
                                self.checkpoint_phase_s),
            name=f"recommender-{self.worker_name}", daemon=True)
        self.process.start()
        self._started_at = time.monotonic()
        self.submitted = 0
        self._report: RecommenderReport | None = None

    @property
    def backlog(self) -> int:
        """Interactions and lists submitted that the child has not reported done."""
        report = self.report()
        return self.submitted - (report.processed if report else 0)

    def submit(self, work: RecommendationWork) -> None:
        """Queue ``work`` for the child. While the child is too far behind, or down, its
        interactions and lists are shed; its erasures never are (they wait for the next
        child when this one is down)."""
        if not work:
            return
        alive = self.process.is_alive() or self._restart()
        if not alive or self.backlog > self.settings.recommender_max_backlog:
            if work.size:
                RECOMMENDER_SHED.inc(work.size)
            work = RecommendationWork(erased=work.erased)
        if not alive:
            self._held_erasures.extend(work.erased)
            return
        if self._held_erasures:  # the erasures a dead child missed go first
            work = RecommendationWork(work.interactions, work.due,
                                      [*self._held_erasures, *work.erased])
            self._held_erasures = []
        if work:
            self.inbox.put(work)
            self.submitted += work.size

    def _restart(self) -> bool:
        if time.monotonic() - self._started_at < RESTART_INTERVAL_S:
            return False
        log.error("recommender process exited (code %s); starting a new one",
                  self.process.exitcode)
        self.inbox.cancel_join_thread()
        self._start()
        return True

    def report(self) -> RecommenderReport | None:
        """The child's newest report, if it sent any."""
        while True:
            try:
                self._report = self.outbox.get_nowait()
            except queue.Empty:
                return self._report

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the child to checkpoint and exit; terminate it if it takes too long."""
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("recommender process did not stop within %.0fs; terminating", timeout_s)
            self.process.terminate()
            self.process.join(5.0)
        self.inbox.cancel_join_thread()
