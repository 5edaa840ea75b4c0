"""One set of segments per tenant, whichever worker scores a customer.

Workers split a tenant's customers (partitions go by customer), and each learns its own into
its tenant's segmenter. If each also fitted its own segments, segment 2 of one worker would
be another kind of customer than segment 2 of the next: ``/v1/segments`` would show whichever
worker published last, sizes would add customers of different segments under one id, and a
customer whose partition moves to another worker (a restart, a rebalance) would change
segment and label for nothing. So one worker per tenant, the holder of a lease in Redis
(:mod:`feature_store.segment_fits`), fits the segments and publishes its fit with them; the
others take that fit (:meth:`online_models.segments.Segmenter.adopt`) and assign with it.

Before its first batch, and on each telemetry tick, a worker renews or asks for each
tenant's lease. A worker that gets it (on start, or after the owner stopped or died) first
takes the tenant's published fit if it is another segmenter's or newer than its own, then
fits from there: its refits refine those centres on its own customers (a uniform share of
the tenant's, partitions being by hash), so the segments keep their ids, labels and identity
across the takeover (a worker back from a restart, too: what it published since its last
checkpoint is newer). A tenant a worker meets between two ticks fits where it arrives, as
with one worker, until the next tick settles who fits it: two workers that met a new
tenant's first customers together each fit for at most a tick, and the one without the
lease then serves the other's fit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson

from feature_store import FeatureStore
from online_models.segments import Segmenter, TenantSegments

log = logging.getLogger(__name__)


class SegmentSharing:
    """This worker's part in fitting its tenants' segments (see the module docstring).

    Parameters
    ----------
    store
        Where the leases, fits and published segments are.
    segments
        This worker's segmenters: those restored from a checkpoint fit only once this worker
        holds their tenant's lease.
    worker
        Names this worker's process among all workers' (it holds the leases).
    lease_ms
        How long a lease lasts unless renewed: a few ticks, so a missed tick loses nothing,
        and a dead owner's tenant is taken over within this time.
    """

    def __init__(self, *, store: FeatureStore, segments: TenantSegments, worker: str,
                 lease_ms: int) -> None:
        self.store = store
        self.segments = segments
        self.worker = worker
        self.lease_ms = lease_ms
        for segmenter in segments.by_tenant.values():
            segmenter.fitting = False
        #: Tenant -> the version of the fit this worker last published (none yet: it has not
        #: held the tenant's lease since it started).
        self._published: dict[str, tuple[str, int]] = {}

    def held(self, tenant: str) -> bool:
        """Whether this worker fits the tenant's segments now."""
        segmenter = self.segments.by_tenant.get(tenant)
        return segmenter is not None and segmenter.fitting

    async def sync(self, tenants: Iterable[str]) -> None:
        """Renew or ask for each tenant's lease; publish the fit and the segments of those
        held, take the fit of the others."""
        for tenant in sorted(tenants):
            segmenter = self.segments.of(tenant)
            held, stored = await self.store.claim_segments(tenant, self.worker, self.lease_ms)
            fit = orjson.loads(stored) if stored else None
            if held:
                if not segmenter.fitting or tenant not in self._published:
                    self._take_over(tenant, segmenter, fit)
                await self.publish(tenant)
            else:
                if segmenter.fitting:
                    log.info("segments of %s: fitted by another worker now", tenant)
                segmenter.fitting = False
                if fit is not None and _version(fit) != segmenter.fit_version:
                    segmenter.adopt(fit)

    async def publish(self, tenant: str) -> None:
        """The tenant's fit (if it changed) and segments for the API, if this worker holds
        the tenant's lease."""
        segmenter = self.segments.by_tenant.get(tenant)
        if segmenter is None or not segmenter.fitting or not segmenter.centres:
            return
        if segmenter.fit_version != self._published.get(tenant):
            if not await self.store.publish_segment_fit(
                    tenant, self.worker, orjson.dumps(segmenter.fit_state())):
                return  # the lease ran out: the next tick says who fits now
            self._published[tenant] = segmenter.fit_version
        await self.store.publish_segments(
            tenant, [(s.segment, s.label, s.centroid) for s in segmenter.summaries()],
            segmenter=segmenter.identity)

    async def release(self) -> None:
        """Give up the leases this worker holds (it is stopping): the next worker to ask
        takes over at once instead of after the lease."""
        for tenant, segmenter in sorted(self.segments.by_tenant.items()):
            if segmenter.fitting:
                segmenter.fitting = False
                await self.store.release_segments(tenant, self.worker)

    def _take_over(self, tenant: str, segmenter: Segmenter, fit: dict | None) -> None:
        """Fit from the tenant's published segments if they are another segmenter's or newer
        than this one's (a restored checkpoint is older than what it published since; a
        tenant this process met before its first tick has a segmenter of its own, new)."""
        if fit is not None:
            identity, refits = _version(fit)
            if identity != segmenter.identity or refits > segmenter.refits:
                segmenter.adopt(fit)
        if not segmenter.fitting:
            log.info("segments of %s: fitted by this worker (%s) now", tenant, self.worker)
        segmenter.fitting = True
        segmenter.refit_if_due()  # the updates it learnt while another worker fitted


def _version(fit: dict) -> tuple[str, int]:
    return str(fit["identity"]), int(fit["refits"])
