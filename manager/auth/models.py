"""Tables of the auth package: sign-in sessions, OAuth identities, login attempts.

Users and API keys live in ``manager.models``; these tables only point at them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from manager.models import UTCDateTime, utcnow


def _user_fk(*, primary_key: bool = False) -> Any:
    column = Column(
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
        index=not primary_key,
    )
    return Field(sa_column=column)


def _when(*, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=index)
    )


class AuthSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds the token; only its SHA-256 is stored."""

    __tablename__ = "auth_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    user_id: int = _user_fk()
    method: str = Field(default="password", description="password, register, or a provider")
    ip: str = Field(default="", sa_column=Column(String(64), nullable=False))
    user_agent: str = Field(default="", sa_column=Column(String(300), nullable=False))
    created_at: datetime = _when()
    expires_at: datetime = _when(index=True)


class OAuthIdentity(SQLModel, table=True):
    """An account at an OAuth / OpenID Connect provider, linked to a farm user."""

    __tablename__ = "oauth_identities"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_oauth_provider_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    provider: str = Field(sa_column=Column(String(100), nullable=False))
    subject: str = Field(sa_column=Column(String(255), nullable=False))
    email: str = Field(sa_column=Column(String(320), nullable=False))
    created_at: datetime = _when()
    last_login_at: datetime = _when()


class UnverifiedEmail(SQLModel, table=True):
    """A self-registered user whose address nobody has proven yet.

    The first sign-in through a provider that verifies the address takes the account over
    from whoever registered it: the password, sessions and keys they set up are dropped.
    """

    __tablename__ = "unverified_emails"

    user_id: int = _user_fk(primary_key=True)
    created_at: datetime = _when()


class LoginAttempt(SQLModel, table=True):
    """A failed password sign-in, kept for a few minutes to rate-limit guessing."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_created", "email", "created_at"),
        Index("ix_login_attempts_ip_created", "ip", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), nullable=False))
    ip: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _when()
