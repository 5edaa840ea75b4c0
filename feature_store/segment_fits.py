"""The segments one worker fits for all: a lease on each tenant's fitting, and the fit.

Every worker learns its own customers into its tenant's segmenter, but one of them, the
lease holder, fits the segments; it publishes the fit, and the others assign with it (see
``agents.segment_sharing``). The lease is a key holding the owner's worker name with an
expiry, renewed while the owner lives: a worker that stops releases it, one that dies loses
it when it expires, and the next worker to ask takes over. Both scripts check the lease and
touch the fit in one step, so a worker whose lease ran out cannot overwrite its successor's
fit.
"""

from __future__ import annotations

from typing import Any

from feature_store.keys import segments_fit_key, segments_owner_key

# KEYS: owner, fit. ARGV: worker, lease (ms). Take or renew the lease if it is free or this
# worker's; reply whether it is held, and the fit stored now.
CLAIM_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
local held = 0
if not owner or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  held = 1
end
return {held, redis.call('GET', KEYS[2])}
"""

# KEYS: owner, fit. ARGV: worker, fit JSON. Store the fit if this worker holds the lease.
PUBLISH_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: owner. ARGV: worker. Give the lease up if this worker holds it.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def claim(redis: Any, tenant: str, worker: str, lease_ms: int) -> tuple[bool, bytes | None]:
    """Take or renew ``worker``'s lease on fitting ``tenant``'s segments: whether it holds
    it, and the tenant's fit as stored (``None`` before the first)."""
    held, fit = await redis.eval(CLAIM_SCRIPT, 2, segments_owner_key(tenant),
                                 segments_fit_key(tenant), worker, lease_ms)
    return bool(held), fit


async def publish(redis: Any, tenant: str, worker: str, fit: bytes) -> bool:
    """Store ``tenant``'s fit, if ``worker`` still holds the lease (whether it did)."""
    return bool(await redis.eval(PUBLISH_SCRIPT, 2, segments_owner_key(tenant),
                                 segments_fit_key(tenant), worker, fit))


async def release(redis: Any, tenant: str, worker: str) -> None:
    """Give up ``worker``'s lease on ``tenant``, so another worker takes over at once."""
    await redis.eval(RELEASE_SCRIPT, 1, segments_owner_key(tenant), worker)
