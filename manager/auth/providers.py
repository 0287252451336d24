"""The OAuth / OpenID Connect providers a farm signs in with, as stored in farm settings.

Google and any OpenID Connect provider are found by discovery; Discord speaks plain OAuth 2
with a user endpoint. Client secrets are stored encrypted and decrypted only to sign in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlmodel import Session

from manager.auth.keyring import Keyring
from manager.auth.settings import DISCORD_OAUTH, GOOGLE_OAUTH, OIDC_PROVIDERS
from manager.errors import InvalidInput, NotFound
from manager.farm_settings import get_setting, set_setting

GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
OIDC_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# Path segments under /api/auth/ that a provider name would shadow.
RESERVED_NAMES = frozenset(
    {"google", "discord", "login", "logout", "register", "me", "password", "keys", "providers"}
)


@dataclass(frozen=True)
class OAuth2Endpoints:
    authorize_url: str
    token_url: str
    userinfo_url: str


DISCORD_ENDPOINTS = OAuth2Endpoints(
    authorize_url="https://discord.com/oauth2/authorize",
    token_url="https://discord.com/api/oauth2/token",
    userinfo_url="https://discord.com/api/users/@me",
)


@dataclass(frozen=True)
class Provider:
    name: str
    kind: Literal["google", "discord", "oidc"]
    label: str
    client_id: str
    encrypted_secret: str
    redirect_url: str | None
    discovery_url: str | None

    def client_secret(self, keyring: Keyring) -> str:
        return keyring.decrypt(self.encrypted_secret, what=f"the client secret of {self.name}")

    @property
    def scope(self) -> str:
        return "identify email" if self.kind == "discord" else "openid email profile"


def _provider(
    name: str, kind: Literal["google", "discord", "oidc"], value: dict[str, Any]
) -> Provider:
    return Provider(
        name=name,
        kind=kind,
        label=value.get("label") or name.capitalize(),
        client_id=value["client_id"],
        encrypted_secret=value["client_secret"],
        redirect_url=value.get("redirect_url"),
        discovery_url=GOOGLE_DISCOVERY_URL if kind == "google" else value.get("discovery_url"),
    )


def configured_providers(session: Session) -> dict[str, Provider]:
    found: dict[str, Provider] = {}
    google = get_setting(session, GOOGLE_OAUTH)
    if google:
        found["google"] = _provider("google", "google", google)
    discord = get_setting(session, DISCORD_OAUTH)
    if discord:
        found["discord"] = _provider("discord", "discord", discord)
    for name, value in sorted((get_setting(session, OIDC_PROVIDERS) or {}).items()):
        found[name] = _provider(name, "oidc", value)
    return found


def get_provider(session: Session, name: str) -> Provider:
    provider = configured_providers(session).get(name)
    if provider is None:
        raise NotFound(
            f"there is no sign-in provider {name!r}; an admin adds one with "
            "`framefarm manager config set google-oauth|discord-oauth|oidc …`",
            code="unknown_provider",
        )
    return provider


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{what} {url!r} is not an http(s) URL", code="invalid_url")
    return url


def _stored(
    keyring: Keyring, client_id: str, client_secret: str, redirect_url: str | None
) -> dict[str, Any]:
    if not client_id.strip() or not client_secret.strip():
        raise InvalidInput("the client ID and client secret must not be empty")
    value: dict[str, Any] = {
        "client_id": client_id.strip(),
        "client_secret": keyring.encrypt(client_secret.strip()),
    }
    if redirect_url:
        value["redirect_url"] = _check_url(redirect_url, "the redirect URL")
    return value


def save_builtin_provider(
    session: Session,
    keyring: Keyring,
    kind: Literal["google", "discord"],
    *,
    client_id: str,
    client_secret: str,
    redirect_url: str | None = None,
) -> Provider:
    value = _stored(keyring, client_id, client_secret, redirect_url)
    set_setting(session, GOOGLE_OAUTH if kind == "google" else DISCORD_OAUTH, value)
    return _provider(kind, kind, value)


def discovery_url_of(url: str) -> str:
    """The discovery document's URL; an issuer URL is completed with the well-known path."""
    _check_url(url, "the discovery URL")
    return url if url.rstrip("/").endswith(DISCOVERY_SUFFIX) else url.rstrip("/") + DISCOVERY_SUFFIX


def save_oidc_provider(
    session: Session,
    keyring: Keyring,
    name: str,
    *,
    discovery_url: str,
    client_id: str,
    client_secret: str,
    redirect_url: str | None = None,
    label: str | None = None,
) -> Provider:
    if not OIDC_NAME.match(name) or name in RESERVED_NAMES:
        raise InvalidInput(
            f"{name!r} cannot name a provider: use lowercase letters, digits and dashes "
            f"(not {', '.join(sorted(RESERVED_NAMES))})",
            code="invalid_provider_name",
        )
    value = _stored(keyring, client_id, client_secret, redirect_url)
    value["discovery_url"] = discovery_url_of(discovery_url)
    if label:
        value["label"] = label
    providers = dict(get_setting(session, OIDC_PROVIDERS) or {})
    providers[name] = value
    set_setting(session, OIDC_PROVIDERS, providers)
    return _provider(name, "oidc", value)


def remove_provider(session: Session, name: str) -> None:
    if name == "google":
        setting = GOOGLE_OAUTH
    elif name == "discord":
        setting = DISCORD_OAUTH
    else:
        providers = dict(get_setting(session, OIDC_PROVIDERS) or {})
        if name not in providers:
            raise NotFound(f"there is no sign-in provider {name!r}", code="unknown_provider")
        del providers[name]
        set_setting(session, OIDC_PROVIDERS, providers)
        return
    if not get_setting(session, setting):
        raise NotFound(f"there is no sign-in provider {name!r}", code="unknown_provider")
    set_setting(session, setting, None)
