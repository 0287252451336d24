"""Accounts: self-registration, and linking a provider's sign-in to a farm user.

A provider's sign-in is linked by its subject once known, else by verified email to the user
with that address, else (when registration is open) to a new user. An address nobody has
proven (a self-registered account) is handed to whoever proves it at a provider.
"""

from __future__ import annotations

import logging

from sqlmodel import Session, col, select, update

from manager.auth.models import OAuthIdentity, UnverifiedEmail
from manager.auth.oauth import ProviderIdentity
from manager.auth.passwords import check_password_policy, set_password
from manager.auth.schemas import UserPublic
from manager.auth.sessions import end_sessions_of
from manager.errors import Forbidden
from manager.models import ApiKey, User, utcnow
from manager.users import create_user

log = logging.getLogger(__name__)


def register_user(session: Session, *, email: str, password: str, name: str = "") -> User:
    """A new, non-admin user with a password, whose address is not verified."""
    check_password_policy(password, email=email)
    user = create_user(session, email=email, name=name)
    set_password(session, user, password)
    assert user.id is not None
    session.add(UnverifiedEmail(user_id=user.id))
    return user


def provider_names_of(session: Session, user: User) -> list[str]:
    return list(
        session.exec(
            select(OAuthIdentity.provider)
            .where(OAuthIdentity.user_id == user.id)
            .order_by(col(OAuthIdentity.provider))
        ).all()
    )


def user_public(session: Session, user: User) -> UserPublic:
    assert user.id is not None
    return UserPublic(
        id=user.id,
        email=user.email,
        name=user.name,
        is_admin=user.is_admin,
        has_password=user.password_hash is not None,
        providers=provider_names_of(session, user),
        created_at=user.created_at,
    )


def user_for_identity(
    session: Session, provider: str, identity: ProviderIdentity, *, registration_open: bool
) -> User:
    """The farm user this provider sign-in belongs to, linking or creating one if allowed."""
    link = session.exec(
        select(OAuthIdentity).where(
            OAuthIdentity.provider == provider, OAuthIdentity.subject == identity.subject
        )
    ).first()
    if link is not None:
        user = session.get(User, link.user_id)
        assert user is not None  # the link goes when the user does
        link.last_login_at = utcnow()
        link.email = identity.email or link.email
        session.add(link)
        return user
    if not identity.email:
        raise Forbidden(
            "the provider did not share an email address; allow it to, then sign in again",
            code="oauth_no_email",
        )
    if not identity.email_verified:
        raise Forbidden(
            f"the provider has not verified {identity.email}; verify it there, then sign in again",
            code="oauth_email_unverified",
        )
    user = session.exec(select(User).where(User.email == identity.email)).first()
    if user is None:
        if not registration_open:
            raise Forbidden(
                f"there is no account for {identity.email} on this farm; ask an admin to add "
                "you (`framefarm manager config add user EMAIL`)",
                code="no_account",
            )
        user = create_user(session, email=identity.email, name=identity.name)
    else:
        _take_over_unverified(session, user, provider)
    assert user.id is not None
    session.add(
        OAuthIdentity(
            user_id=user.id, provider=provider, subject=identity.subject, email=identity.email
        )
    )
    return user


def _take_over_unverified(session: Session, user: User, provider: str) -> None:
    """Whoever registered an address they did not prove loses the account to its owner."""
    unverified = session.get(UnverifiedEmail, user.id)
    if unverified is None:
        return
    log.warning(
        "%s proved %s, which was self-registered without proof: dropping its password, "
        "sessions and API keys",
        provider,
        user.email,
    )
    user.password_hash = None
    session.add(user)
    end_sessions_of(session, user)
    session.exec(
        update(ApiKey)
        .where(col(ApiKey.user_id) == user.id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    session.delete(unverified)
