"""Login rate limiting: a few failed passwords per address and per client, then 429.

Failures are rows in the database, so several managers behind one load balancer count
together. A successful sign-in forgets the failures of its address.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from manager.auth.models import LoginAttempt
from manager.errors import FarmError, error_response
from manager.models import utcnow

WINDOW = timedelta(minutes=5)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 20


class TooManyLoginAttempts(FarmError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _failures(
    session: Session, column: object, value: str, since: datetime
) -> tuple[int, datetime]:
    count, oldest = session.exec(
        select(func.count(), func.min(col(LoginAttempt.created_at))).where(
            column == value,  # type: ignore[arg-type]
            col(LoginAttempt.created_at) > since,
        )
    ).one()
    return int(count), oldest


def check_login_allowed(
    session: Session, *, email: str, ip: str, now: datetime | None = None
) -> None:
    """Raise TooManyLoginAttempts while ``email`` or ``ip`` has failed too often lately."""
    now = now or utcnow()
    since = now - WINDOW
    for column, value, limit, what in (
        (col(LoginAttempt.email), email, MAX_FAILURES_PER_EMAIL, f"for {email}"),
        (col(LoginAttempt.ip), ip, MAX_FAILURES_PER_IP, "from your address"),
    ):
        count, oldest = _failures(session, column, value, since)
        if count >= limit:
            wait = max(1, math.ceil((oldest + WINDOW - now).total_seconds()))
            raise TooManyLoginAttempts(
                f"too many failed sign-ins {what}; try again in {wait} seconds",
                retry_after=wait,
            )


def record_failed_login(
    session: Session, *, email: str, ip: str, now: datetime | None = None
) -> None:
    now = now or utcnow()
    session.exec(delete(LoginAttempt).where(col(LoginAttempt.created_at) < now - WINDOW))
    session.add(LoginAttempt(email=email[:320], ip=ip[:64], created_at=now))


def clear_failed_logins(session: Session, *, email: str) -> None:
    session.exec(delete(LoginAttempt).where(col(LoginAttempt.email) == email))


def install_rate_limit_handler(app: FastAPI) -> None:
    @app.exception_handler(TooManyLoginAttempts)
    async def too_many(_: Request, exc: TooManyLoginAttempts) -> JSONResponse:
        return error_response(
            exc.status_code, exc.code, exc.message, **{"Retry-After": str(exc.retry_after)}
        )
