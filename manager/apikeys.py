"""API keys: ``ff_`` plus a random secret, stored only as a SHA-256 hash.

The secrets are 256 random bits, so a fast hash is enough to keep them safe at rest
(passwords, which are guessable, get argon2 instead).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

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


def touch_api_key(session: Session, record: ApiKey) -> None:
    """Record the last use, at most once a minute per key to spare the database."""
    now = utcnow()
    if record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60:
        session.commit()  # end the read, so that the write starts a transaction of its own
        record.last_used_at = now
        session.add(record)
        session.commit()


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
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
    return record
