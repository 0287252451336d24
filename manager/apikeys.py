"""API keys: ``ff_`` plus a random secret, stored only as a SHA-256 hash.

The secrets are 256 random bits, so a fast hash is enough to keep them safe at rest
(passwords, which are guessable, get argon2 instead).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlmodel import Session, select

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
    session: Session, *, name: str, scope: ApiKeyScope, user: User | None = None
) -> NewApiKey:
    if scope is ApiKeyScope.USER and user is None:
        raise ValueError("a user-scope key needs a user")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
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
        record.last_used_at = now
        session.add(record)
        session.commit()
