"""API keys: ``ff_`` plus a random secret, stored only as a SHA-256 hash.

The secrets are 256 random bits, so a fast hash is enough to keep them safe at rest
(passwords, which are guessable, get argon2 instead).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, event, update
from sqlmodel import Session, col, select

from manager.errors import NotFound
from manager.models import ApiKey, User, utcnow
from shared.wire import API_KEY_PREFIX, ApiKeyScope


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    key: str
    """The secret; shown once and never stored."""
    record: ApiKey


def create_api_key(
    session: Session,
    *,
    name: str,
    scope: ApiKeyScope,
    user: User | None = None,
    key: str | None = None,
) -> NewApiKey:
    """A new key; ``key`` fixes the secret (only ``config init-test`` does, for development)."""
    if scope is ApiKeyScope.USER and user is None:
        raise ValueError("a user-scope key needs a user")
    if scope is ApiKeyScope.RUNNER and user is not None:
        raise ValueError("a runner key acts for no user; leave out the user")
    key = key or API_KEY_PREFIX + secrets.token_urlsafe(32)
    if not key.startswith(API_KEY_PREFIX):
        raise ValueError(f"an API key starts with {API_KEY_PREFIX}")
    record = ApiKey(
        name=name,
        prefix=key[:10],
        key_hash=hash_key(key),
        scope=scope.value,
        user_id=user.id if user else None,
    )
    session.add(record)
    session.flush()
    return NewApiKey(key=key, record=record)


def find_api_key(session: Session, key: str) -> ApiKey | None:
    """The live key record for ``key``, or None (unknown or revoked)."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    record = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    if record is None or record.revoked_at is not None:
        return None
    return record


KEY_CACHE_SECONDS = 5.0
"""How long a valid key is trusted without the database: the bound on how late a revocation
made by another process (the ``config`` command, another manager) takes effect here."""

_revocations = 0
"""Revocations made in this process; any bump empties every cache, so they act at once."""


class ApiKeyCache:
    """Valid keys, remembered for a few seconds so that runners' frequent calls skip the look-up.

    Only keys found live are remembered; an unknown or revoked key is looked up every time.
    """

    def __init__(
        self, ttl: float = KEY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, ApiKey]] = {}
        self._revocations = _revocations
        self._lock = threading.Lock()

    def get(self, key: str) -> ApiKey | None:
        with self._lock:
            if self._revocations != _revocations:
                self._entries.clear()
                self._revocations = _revocations
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: str, record: ApiKey) -> None:
        with self._lock:
            if len(self._entries) > 10_000:  # a farm has a handful of keys; never grow unbounded
                self._entries.clear()
            self._entries[key] = (self._clock() + self.ttl, record)


def look_up_api_key(
    engine: Engine, write_engine: Engine, key: str, cache: ApiKeyCache
) -> ApiKey | None:
    """``find_api_key`` through ``cache``; the last use is written down at most once a minute
    per key, in a write transaction of its own (``write_engine`` queues it with the others)."""
    record = cache.get(key)
    if record is None:
        with Session(engine, expire_on_commit=False) as session:
            record = find_api_key(session, key)
        if record is None:
            return None
        cache.put(key, record)
    if last_use_is_stale(record):
        now = record.last_used_at = utcnow()  # the cached record too: one request writes
        with write_engine.begin() as conn:
            conn.execute(update(ApiKey).where(col(ApiKey.id) == record.id).values(last_used_at=now))
    return record


def last_use_is_stale(record: ApiKey) -> bool:
    """Whether the key's last use is worth writing down (at most once a minute per key)."""
    last = record.last_used_at
    return last is None or (utcnow() - last).total_seconds() > 60


def _forget_cached_keys() -> None:
    global _revocations
    _revocations += 1


def get_api_key(session: Session, key_id: int) -> ApiKey:
    record = session.get(ApiKey, key_id)
    if record is None:
        raise NotFound(f"there is no API key {key_id}", code="api_key_not_found")
    return record


def list_api_keys(session: Session, *, user: User | None = None) -> list[ApiKey]:
    """All keys (revoked ones too, for the record), or those of ``user``."""
    query = select(ApiKey).order_by(col(ApiKey.id))
    if user is not None:
        query = query.where(ApiKey.user_id == user.id)
    return list(session.exec(query).all())


def revoke_api_key(session: Session, record: ApiKey) -> ApiKey:
    """Stop the key working at once; the record stays, with when it was revoked."""
    _forget_cached_keys()
    # Again once committed: a request between now and the commit may have cached it anew.
    event.listen(session, "after_commit", lambda _session: _forget_cached_keys(), once=True)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
    return record
