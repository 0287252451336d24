"""Who may use the farm: passwords, sessions, OAuth sign-in, and the keys behind them.

manager/auth/
├── keyring.py     the secret key (FRAMEFARM_SECRET_KEY or a 0600 key file) and its subkeys
├── passwords.py   argon2 hashes and the password policy
├── sessions.py    signed session cookies and CSRF
├── ratelimit.py   failed sign-ins per address and per client, then 429
├── settings.py    the farm settings auth adds: localauth, registration, providers, …
├── providers.py   the configured OAuth / OpenID Connect providers (secrets encrypted)
├── oauth.py       authlib: the redirect out, the callback, ID token and user info
├── accounts.py    self-registration; linking a provider's sign-in to a user
├── schemas.py     what the auth and admin APIs accept and return
└── models.py      auth_sessions, oauth_identities, unverified_emails, login_attempts
"""

from __future__ import annotations

from fastapi import FastAPI

from manager.auth import settings as _settings  # noqa: F401  (registers the auth settings)
from manager.auth.keyring import KEY_FILE_NAME, Keyring
from manager.auth.oauth import OAuthClients
from manager.auth.ratelimit import install_rate_limit_handler
from manager.settings import ManagerSettings


def keyring_for(settings: ManagerSettings) -> Keyring:
    return Keyring(secret_key=settings.secret_key, key_file=settings.storage / KEY_FILE_NAME)


def install_auth(app: FastAPI, settings: ManagerSettings) -> None:
    """Give the app its keyring, OAuth clients and the 429 handler for sign-in attempts."""
    keyring = keyring_for(settings)
    app.state.keyring = keyring
    app.state.oauth_clients = OAuthClients(keyring)
    install_rate_limit_handler(app)
