"""User accounts (sign-in with passwords and OAuth comes with the auth work)."""

from __future__ import annotations

from sqlmodel import Session, select

from manager.errors import Conflict, NotFound
from manager.models import User


def create_user(session: Session, *, email: str, name: str = "", is_admin: bool = False) -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise ValueError(f"{email!r} is not an email address")
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise Conflict(f"a user {email} already exists", code="user_exists")
    user = User(email=email, name=name or email.split("@")[0], is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def get_user_by_email(session: Session, email: str) -> User:
    user = session.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise NotFound(f"there is no user {email}", code="user_not_found")
    return user
