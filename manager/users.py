"""User accounts. Passwords, sessions and OAuth sign-in live in ``manager.auth``."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

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


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"there is no user {user_id}", code="user_not_found")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id))).all())


def _other_admins(session: Session, user: User) -> int:
    query = select(func.count()).select_from(User).where(col(User.is_admin), User.id != user.id)
    return int(session.exec(query).one())


def set_admin(session: Session, user: User, is_admin: bool) -> User:
    """Make or unmake an admin; the farm always keeps at least one."""
    if user.is_admin and not is_admin and _other_admins(session, user) == 0:
        raise Conflict(
            f"{user.email} is the only admin; make someone else an admin first", code="last_admin"
        )
    user.is_admin = is_admin
    session.add(user)
    return user


def delete_user(session: Session, user: User) -> None:
    """Delete the user with their keys and sessions; their jobs stay, without an owner."""
    if user.is_admin and _other_admins(session, user) == 0:
        raise Conflict(
            f"{user.email} is the only admin; make someone else an admin first", code="last_admin"
        )
    session.delete(user)
    session.flush()
