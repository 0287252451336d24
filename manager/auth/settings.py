"""The farm settings that auth adds (``framefarm manager config …``).

``localauth`` and ``registration`` switch password sign-in and self-registration; the OAuth
providers are stored as small dictionaries whose client secret is encrypted with the
manager's secret key (see ``manager.auth.keyring``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from manager.farm_settings import SettingSpec, get_setting, register_setting
from manager.farm_settings import _bool as parse_bool

LOCALAUTH = "localauth"
REGISTRATION = "registration"
SESSION_HOURS = "session-hours"
GOOGLE_OAUTH = "google-oauth"
DISCORD_OAUTH = "discord-oauth"
OIDC_PROVIDERS = "oidc-providers"


def _hours(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 24 * 366:
        raise ValueError("must be between 1 and 8784 hours")
    return value


def _set_with_command(name: str, usage: str) -> Callable[[str], Any]:
    def parse(_: str) -> Any:
        raise ValueError(f"set it with `framefarm manager config set {name} {usage}`")

    return parse


for _spec in (
    SettingSpec(LOCALAUTH, False, parse_bool, "sign-in with email and password"),
    SettingSpec(
        REGISTRATION, False, parse_bool, "anyone may sign up, with a password or through a provider"
    ),
    SettingSpec(SESSION_HOURS, 168, _hours, "hours a browser stays signed in"),
    SettingSpec(
        GOOGLE_OAUTH,
        None,
        _set_with_command(GOOGLE_OAUTH, "CLIENT_ID CLIENT_SECRET --redirect-url URL"),
        "sign-in with Google",
        secret=True,
    ),
    SettingSpec(
        DISCORD_OAUTH,
        None,
        _set_with_command(DISCORD_OAUTH, "CLIENT_ID CLIENT_SECRET --redirect-url URL"),
        "sign-in with Discord",
        secret=True,
    ),
    SettingSpec(
        OIDC_PROVIDERS,
        {},
        _set_with_command("oidc", "NAME DISCOVERY_URL CLIENT_ID CLIENT_SECRET"),
        "sign-in with OpenID Connect providers, by name",
        secret=True,
    ),
):
    register_setting(_spec)


def localauth_enabled(session: Session) -> bool:
    return bool(get_setting(session, LOCALAUTH))


def registration_open(session: Session) -> bool:
    return bool(get_setting(session, REGISTRATION))


def session_lifetime(session: Session) -> timedelta:
    return timedelta(hours=int(get_setting(session, SESSION_HOURS)))
