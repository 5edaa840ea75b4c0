"""Waiting out a Redis outage: a batch is retried until Redis answers, a timer tick skipped.

Redis may go away for a while: restarted, failed over, or stopped (a paused VM, a ``SIGSTOP``).
A round trip then fails at once (connection refused or reset, ``LOADING`` while it reads its
data back) or never answers; the worker's client has no per-reply timeout, so the deadline of
the batch or tick (``CRM_REDIS_DEADLINE_S``) ends the wait. Either way:

* a **batch** (or an erasure) is retried whole, with backoff, until it succeeds. It is not
  acknowledged to Kafka before (the batch task acks its messages only then), and its
  partitions' progress is read from Redis again first, as the failed attempt may or may not
  have reached it. Every write of a batch is idempotent (events once by id in Lua, rule state
  and scores overwritten, progress and watermarks set, the alerts' feed once by id), so the
  retry changes nothing twice; what the failed attempt already had acknowledged by Kafka is
  not produced again (see :mod:`agents.publishing` and :mod:`stream.deadletters`). Only the
  outcome counters in Redis may count its messages again, as duplicates.
* a **timer** tick (telemetry, recommendation lists, the silence sweep) is skipped: it logs,
  and the next tick does the work.

Each wait is counted in ``crm_worker_redis_waits_total{task}``.

A batch that fails for any other reason (the broker not taking its alerts or dead letters in
time, a bug) is retried the same way, logged with its trace and counted in
``crm_worker_batch_errors_total{error}``: an agent that raised would be restarted by Faust
without the batch it held, whose messages Kafka would not deliver again before a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from feature_store.batch import ProgressLost
from feature_store.client import STORE_UNAVAILABLE
from stream.metrics import BATCH_ERRORS, REDIS_WAITS
from stream.rereads import PartitionReadError

log = logging.getLogger(__name__)

#: What a round trip raises while Redis is away (see ``feature_store.client``), and the
#: deadline of a batch or tick (``TimeoutError``) when Redis does not answer at all.
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (*STORE_UNAVAILABLE, TimeoutError)

#: What makes a batch wait and try again besides: a Redis that came back without its last
#: writes (the retry reads the partitions' progress again and reads what Redis forgot from
#: the broker, see :mod:`stream.rereads`), and that read failing.
BATCH_RETRIED: tuple[type[BaseException], ...] = (
    *REDIS_UNAVAILABLE, ProgressLost, PartitionReadError)

FIRST_WAIT_S = 0.1
LONGEST_WAIT_S = 5.0


def wait_before_attempt(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): doubling, capped.

    >>> [wait_before_attempt(n) for n in (1, 2, 3, 7, 8)]
    [0.1, 0.2, 0.4, 5.0, 5.0]
    """
    return min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (attempt - 1))


def _reason(error: BaseException) -> str:
    if type(error) is TimeoutError:  # the deadline, not a socket timeout
        return "no answer within the deadline"
    return f"{type(error).__name__}: {error}"


async def wait_for_redis(error: BaseException, failures: int, *, what: str, task: str) -> None:
    """After the ``failures``-th failed attempt at ``what`` (``error``): count, log, back off.

    The caller's loop then tries again, for a batch::

        failures = 0
        while True:
            try:
                async with asyncio.timeout(deadline_s):
                    await process_batch(worker, messages)
                break
            except REDIS_UNAVAILABLE as error:
                failures += 1
                await wait_for_redis(error, failures, what="batch …", task="batch")
                worker.batch_failed()  # the failed attempt may or may not have reached Redis
    """
    wait_s = wait_before_attempt(failures)
    REDIS_WAITS.labels(task=task).inc()
    log.warning("%s: Redis unavailable (%s); retrying in %.1f s (attempt %d)", what,
                _reason(error), wait_s, failures + 1)
    await asyncio.sleep(wait_s)


async def wait_after_error(error: Exception, failures: int, *, what: str) -> None:
    """After the ``failures``-th attempt at ``what`` failed with an unexpected ``error`` (the
    broker not taking a batch's alerts or dead letters in time, a bug): count, log with the
    trace, back off. The batch is then tried again: skipping it would lose its events, as
    Kafka delivers them again only after a restart, when Redis may have moved past them."""
    wait_s = wait_before_attempt(failures)
    BATCH_ERRORS.labels(error=type(error).__name__).inc()
    log.error("%s failed; retrying in %.1f s (attempt %d)", what, wait_s, failures + 1,
              exc_info=error)
    await asyncio.sleep(wait_s)


@contextlib.asynccontextmanager
async def skip_tick_without_redis(task: str, deadline_s: float) -> AsyncIterator[None]:
    """Bound a timer's tick by ``deadline_s``; if Redis is unavailable, log and skip it."""
    try:
        async with asyncio.timeout(deadline_s):
            yield
    except REDIS_UNAVAILABLE as error:
        REDIS_WAITS.labels(task=task).inc()
        log.warning("%s tick skipped: Redis unavailable (%s); trying again next tick", task,
                    _reason(error))
