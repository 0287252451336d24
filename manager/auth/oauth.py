"""Sign-in with OAuth 2 / OpenID Connect through authlib: the redirect out, and the way back.

``begin_sign_in`` asks authlib for the provider's authorization URL (with PKCE, and a nonce
for OpenID Connect) and packs ``state``, nonce and verifier into a short-lived signed cookie.
``identity_from_callback`` refuses a callback whose ``state`` is not the cookie's, trades the
code for tokens, verifies the ID token against the provider's keys (or, for Discord, asks its
user endpoint) and returns who signed in. ``manager.auth.accounts`` links that to a user.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx2  # authlib's HTTP client when installed (we depend on it): its errors
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import StarletteOAuth2App
from authlib.integrations.starlette_client.integration import StarletteIntegration
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc.errors import JoseError

from manager.auth import providers
from manager.auth.keyring import Keyring
from manager.auth.providers import Provider
from manager.errors import FarmError

log = logging.getLogger(__name__)

STATE_COOKIE = "framefarm_oauth"
STATE_MAX_AGE = 600
CLIENT_MAX_AGE = 3600.0
"""Seconds a provider's discovery document and keys are reused before they are fetched again."""
HTTP_TIMEOUT = 15.0


class OAuthFailed(FarmError):
    status_code = 400
    code = "oauth_failed"


class ProviderUnreachable(FarmError):
    status_code = 502
    code = "oauth_provider_unreachable"


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the provider says signed in."""

    subject: str
    email: str
    email_verified: bool
    name: str


def build_client(provider: Provider, client_secret: str) -> StarletteOAuth2App:
    options: dict[str, Any] = {
        "client_kwargs": {
            "scope": provider.scope,
            "code_challenge_method": "S256",
            "timeout": HTTP_TIMEOUT,
        }
    }
    if provider.kind == "discord":
        endpoints = providers.DISCORD_ENDPOINTS
        options["authorize_url"] = endpoints.authorize_url
        options["access_token_url"] = endpoints.token_url
    else:
        options["server_metadata_url"] = provider.discovery_url
    return StarletteOAuth2App(
        StarletteIntegration(provider.name),
        name=provider.name,
        client_id=provider.client_id,
        client_secret=client_secret,
        **options,
    )


class OAuthClients:
    """authlib clients by provider, rebuilt when its settings change or it grows old."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._clients: dict[str, tuple[Provider, float, StarletteOAuth2App]] = {}

    def client_for(self, provider: Provider) -> StarletteOAuth2App:
        cached = self._clients.get(provider.name)
        if cached and cached[0] == provider and time.monotonic() - cached[1] < CLIENT_MAX_AGE:
            return cached[2]
        client = build_client(provider, provider.client_secret(self._keyring))
        self._clients[provider.name] = (provider, time.monotonic(), client)
        return client


def _serializer(keyring: Keyring) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keyring.derive("oauth state"), salt="framefarm-oauth-state")


async def begin_sign_in(
    client: StarletteOAuth2App,
    keyring: Keyring,
    provider: Provider,
    *,
    redirect_uri: str,
    next_path: str,
) -> tuple[str, str]:
    """The provider's authorization URL, and the state cookie to set before going there."""
    try:
        found = await client.create_authorization_url(redirect_uri)
    except httpx2.HTTPError as exc:
        raise ProviderUnreachable(
            f"{provider.label} could not be reached ({exc}); try again later"
        ) from exc
    cookie = _serializer(keyring).dumps(
        {
            "provider": provider.name,
            "state": found["state"],
            "nonce": found.get("nonce"),
            "verifier": found.get("code_verifier"),
            "redirect_uri": redirect_uri,
            "next": next_path,
        }
    )
    return found["url"], cookie


def check_state(
    keyring: Keyring, provider: Provider, cookie: str | None, state: str | None
) -> dict[str, Any]:
    """The sign-in data in the cookie, if ``state`` is the one this browser was sent out with."""
    if not cookie:
        raise OAuthFailed(
            "this browser did not start a sign-in (or cookies are blocked); start again",
            code="oauth_state_missing",
        )
    try:
        data: dict[str, Any] = _serializer(keyring).loads(cookie, max_age=STATE_MAX_AGE)
    except BadSignature:
        raise OAuthFailed(
            "the sign-in took too long or its cookie was altered; start again",
            code="oauth_state_missing",
        ) from None
    if (
        data.get("provider") != provider.name
        or not state
        or not hmac.compare_digest(str(data.get("state")), state)
    ):
        raise OAuthFailed(
            "the sign-in answer does not belong to the sign-in this browser started "
            "(state mismatch); start again",
            code="oauth_state_mismatch",
        )
    return data


async def identity_from_callback(
    client: StarletteOAuth2App, provider: Provider, *, code: str, state_data: dict[str, Any]
) -> ProviderIdentity:
    try:
        token = await client.fetch_access_token(
            redirect_uri=state_data["redirect_uri"],
            code=code,
            code_verifier=state_data.get("verifier"),
        )
        if provider.kind == "discord":
            return await _discord_identity(client, token)
        return await _oidc_identity(client, token, state_data.get("nonce"))
    except httpx2.HTTPStatusError as exc:
        log.warning("sign-in with %s failed: %s", provider.name, exc)
        raise OAuthFailed(
            f"{provider.label} answered {exc.response.status_code} to "
            f"{exc.request.url.copy_with(query=None)}"
        ) from exc
    except httpx2.HTTPError as exc:
        raise ProviderUnreachable(
            f"{provider.label} could not be reached ({exc}); try again later"
        ) from exc
    except (AuthlibBaseError, JoseError) as exc:
        log.warning("sign-in with %s failed: %r", provider.name, exc)
        raise OAuthFailed(f"{provider.label} refused the sign-in: {exc}") from exc


async def _oidc_identity(
    client: StarletteOAuth2App, token: dict[str, Any], nonce: str | None
) -> ProviderIdentity:
    if "id_token" not in token:
        raise OAuthFailed("the provider sent no ID token; is it an OpenID Connect provider?")
    claims = dict(await client.parse_id_token(token, nonce=nonce))
    if "email" not in claims or "email_verified" not in claims:
        info = dict(await client.userinfo(token=token))
        if info.get("sub") != claims.get("sub"):
            raise OAuthFailed("the provider's user info is about someone else than its ID token")
        claims = {**info, **claims}
    return ProviderIdentity(
        subject=str(claims["sub"]),
        email=str(claims.get("email") or "").strip().lower(),
        email_verified=claims.get("email_verified") in (True, "true"),
        name=str(claims.get("name") or claims.get("preferred_username") or ""),
    )


async def _discord_identity(client: StarletteOAuth2App, token: dict[str, Any]) -> ProviderIdentity:
    response = await client.get(providers.DISCORD_ENDPOINTS.userinfo_url, token=token)
    response.raise_for_status()
    user = response.json()
    return ProviderIdentity(
        subject=str(user["id"]),
        email=str(user.get("email") or "").strip().lower(),
        email_verified=user.get("verified") is True,
        name=str(user.get("global_name") or user.get("username") or ""),
    )
