"""Passwords: argon2id hashes, a minimum policy, and checking a sign-in."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from manager.errors import InvalidInput
from manager.models import User

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so a wrong address costs as much as a wrong password."""
    return _hasher.hash("framefarm: no such user")


def check_password_policy(password: str, *, email: str = "") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password is too short; use at least {MIN_PASSWORD_LENGTH} characters",
            code="weak_password",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password is longer than {MAX_PASSWORD_LENGTH} characters", code="weak_password"
        )
    if email and password.strip().lower() == email.strip().lower():
        raise InvalidInput("the password must not be the email address", code="weak_password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(session: Session, user: User, password: str) -> None:
    """Check the policy and store the argon2 hash of ``password`` (never the password)."""
    check_password_policy(password, email=user.email)
    user.password_hash = hash_password(password)
    session.add(user)


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user whose email and password these are, or None; upgrades old hashes."""
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None or user.password_hash is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    return user
