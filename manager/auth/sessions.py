"""Browser sessions: a signed, HttpOnly, SameSite=Lax cookie, and CSRF protection.

The cookie carries a random token, signed with a key derived from the manager's secret; the
database keeps only the token's SHA-256, so a copy of the database signs nobody in. Requests
that change state and are authenticated by the cookie must echo the CSRF token (from the
sign-in answer, ``GET /api/auth/me`` or the ``framefarm_csrf`` cookie) in ``X-CSRF-Token``.
API keys sent as ``Authorization: Bearer`` need no CSRF token: browsers never add them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request, Response
from itsdangerous import BadSignature, Signer
from sqlmodel import Session, col, delete, select

from manager.auth.keyring import Keyring
from manager.auth.models import AuthSession
from manager.errors import Forbidden, Unauthorized
from manager.models import User, utcnow

SESSION_COOKIE = "framefarm_session"
CSRF_COOKIE = "framefarm_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class NewSession:
    token: str
    """The secret in the cookie; never stored."""
    record: AuthSession
    csrf_token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _signer(keyring: Keyring) -> Signer:
    return Signer(keyring.derive("session cookie"), salt="framefarm-session")


def csrf_token_for(keyring: Keyring, token: str) -> str:
    return hmac.new(keyring.derive("csrf"), token.encode(), hashlib.sha256).hexdigest()


def start_session(
    session: Session,
    keyring: Keyring,
    user: User,
    *,
    method: str,
    lifetime: timedelta,
    ip: str = "",
    user_agent: str = "",
) -> NewSession:
    assert user.id is not None
    now = utcnow()
    session.exec(delete(AuthSession).where(col(AuthSession.expires_at) < now))
    token = secrets.token_urlsafe(32)
    record = AuthSession(
        token_hash=_hash(token),
        user_id=user.id,
        method=method,
        ip=ip[:64],
        user_agent=user_agent[:300],
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(record)
    session.flush()
    return NewSession(token=token, record=record, csrf_token=csrf_token_for(keyring, token))


def set_session_cookies(
    response: Response, keyring: Keyring, new: NewSession, *, secure: bool
) -> None:
    max_age = max(0, round((new.record.expires_at - utcnow()).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        _signer(keyring).sign(new.token).decode(),
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    # Readable by the page's scripts, which send it back in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE, new.csrf_token, max_age=max_age, samesite="strict", secure=secure, path="/"
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")


def session_token(request: Request) -> str | None:
    """The verified token of the request's session cookie; None without a cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return _signer(request.app.state.keyring).unsign(cookie).decode()
    except BadSignature:
        raise Unauthorized(
            "the session cookie is not valid here (the manager's secret key changed?); "
            "sign in again",
            code="session_expired",
        ) from None


def find_session(
    session: Session, token: str, *, now: datetime | None = None
) -> tuple[AuthSession, User | None]:
    """The session of ``token`` and its user (None when the account is gone), read together:
    every cookie-authenticated request asks, so it is one query, not two."""
    found = session.exec(
        select(AuthSession, User)
        .outerjoin(User, col(User.id) == col(AuthSession.user_id))
        .where(AuthSession.token_hash == _hash(token))
    ).first()
    if found is None or found[0].expires_at <= (now or utcnow()):
        raise Unauthorized(
            "your session expired or was ended; sign in again", code="session_expired"
        )
    return found[0], found[1]


def user_from_session(request: Request, session: Session) -> User | None:
    """The signed-in user of a cookie-authenticated request, checking CSRF where it matters."""
    token = session_token(request)
    if token is None:
        return None
    record, user = find_session(session, token)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, csrf_token_for(request.app.state.keyring, token)):
            raise Forbidden(
                f"this request changes something and came with a session cookie but without "
                f"a valid {CSRF_HEADER} header; send the csrf_token from GET /api/auth/me",
                code="csrf_failed",
            )
    if user is None:
        raise Unauthorized("your account no longer exists", code="session_expired")
    request.state.auth_session = record
    request.state.session_token = token
    return user


def end_session(session: Session, record: AuthSession) -> None:
    session.delete(record)


def end_sessions_of(session: Session, user: User, *, keep: AuthSession | None = None) -> int:
    """Sign ``user`` out everywhere (but ``keep``); returns how many sessions ended."""
    query = delete(AuthSession).where(col(AuthSession.user_id) == user.id)
    if keep is not None:
        query = query.where(col(AuthSession.id) != keep.id)
    result = session.exec(query)
    return int(result.rowcount or 0)
