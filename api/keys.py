"""API keys: random secrets shown once, stored in Redis only as their SHA-256.

A key is bound to one tenant and carries scopes (``read``, ``ingest``, ``admin``).

>>> hash_key("crm_example")[:12]
'13a8a57c2ffe'
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from feature_store.client import AsyncRedis, connect
from feature_store.keys import api_key_key
from schemas.api import Scope
from stream.settings import Settings

KEY_PREFIX = "crm_"
_SCOPE_NAMES = frozenset(scope.value for scope in Scope)
_TENANT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True)
class ApiKey:
    """What a presented key is allowed to do (never the key itself)."""

    key_hash: str
    tenant: str
    scopes: frozenset[Scope]
    name: str
    rate_limit: int | None = None


@dataclass
class KeyCache:
    """Known keys' records for ``ttl_s`` seconds (0: no caching), at most ``max_entries``.

    >>> cache = KeyCache(ttl_s=2.0)
    >>> cache.put(ApiKey("h", "shop1", frozenset(), "k"), now=10.0)
    >>> cache.get("h", now=11.9).tenant, cache.get("h", now=12.1)
    ('shop1', None)
    """

    ttl_s: float
    max_entries: int = 10_000
    _entries: dict[str, tuple[float, ApiKey]] = field(default_factory=dict, repr=False)

    def get(self, key_hash: str, now: float) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if now >= entry[0]:
            del self._entries[key_hash]
            return None
        return entry[1]

    def put(self, api_key: ApiKey, now: float) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {h: e for h, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[api_key.key_hash] = (now + self.ttl_s, api_key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(scopes: Iterable[str] | str) -> frozenset[Scope]:
    """Scopes from a list or a comma-separated string; raises ``ValueError`` on unknown ones.

    >>> sorted(parse_scopes("read, ingest"))
    [<Scope.INGEST: 'ingest'>, <Scope.READ: 'read'>]
    """
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise ValueError("at least one scope is required (read, ingest, admin)")
    return frozenset(Scope(name) for name in names)


def _check_tenant(tenant: str) -> None:
    if not tenant or len(tenant) > 64 or not set(tenant) <= _TENANT_CHARS:
        raise ValueError(f"invalid tenant {tenant!r}: 1-64 of A-Z a-z 0-9 _ . -")


async def create_key(
    redis: AsyncRedis,
    tenant: str,
    scopes: Iterable[str] | str,
    name: str,
    *,
    rate_limit: int | None = None,
) -> str:
    """Make a new key for ``tenant``, store its hash, and return the key (shown only once)."""
    _check_tenant(tenant)
    parsed = parse_scopes(scopes)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = {
        "tenant": tenant,
        "scopes": ",".join(sorted(parsed)),
        "name": name,
        "created_at": str(int(time.time() * 1000)),
    }
    if rate_limit is not None:
        record["rate_limit"] = str(rate_limit)
    await redis.hset(api_key_key(hash_key(key)), mapping=dict(record))  # type: ignore[misc,arg-type]
    return key


async def revoke_key(redis: AsyncRedis, key: str) -> bool:
    """Forget a key; answers whether it existed."""
    return bool(await redis.delete(api_key_key(hash_key(key))))


def api_key_from_record(key_hash: str, record: dict[bytes, bytes]) -> ApiKey | None:
    """Decode a stored key record (``HGETALL``); ``None`` when there is none."""
    if not record or b"tenant" not in record:
        return None
    text = {field.decode(): value.decode() for field, value in record.items()}
    scopes = frozenset(Scope(s) for s in text.get("scopes", "").split(",") if s in _SCOPE_NAMES)
    limit = text.get("rate_limit")
    return ApiKey(key_hash=key_hash, tenant=text["tenant"], scopes=scopes,
                  name=text.get("name", ""), rate_limit=int(limit) if limit else None)


def create_key_sync(
    settings: Settings,
    *,
    tenant: str,
    scopes: Iterable[str] | str,
    name: str,
    rate_limit: int | None = None,
) -> str:
    """:func:`create_key` for command-line tools (``crm keys create``, ``crm dev``)."""

    async def create() -> str:
        client = connect(settings.redis_url, cluster=settings.redis_cluster)
        try:
            return await create_key(client, tenant, scopes, name, rate_limit=rate_limit)
        finally:
            await client.aclose()

    return asyncio.run(create())
