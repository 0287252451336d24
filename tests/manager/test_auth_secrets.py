"""No password, key, client secret or session token in plain text: not in the database, not
in the logs; the secret key that protects the rest lives outside the database."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import MetaData, select
from sqlmodel import Session

from framefarm.cli import main
from manager.auth import keyring_for
from manager.auth.keyring import Keyring, SecretKeyMismatch
from manager.auth.providers import configured_providers, save_oidc_provider
from manager.auth.sessions import CSRF_HEADER, SESSION_COOKIE
from manager.config_cli import TEST_ADMIN_PASSWORD, TEST_RUNNER_KEY
from manager.db import session_scope
from manager.settings import ManagerSettings
from tests.manager.auth_helpers import browser, configure, engine_of, login
from tests.manager.conftest import Farm

CLIENT_SECRET = "oidc-client-secret-3f9a1c"
PASSWORDS = ("artist password 7731", "registered password 5510", "changed password 9120")


def _everything_stored(engine) -> str:  # type: ignore[no-untyped-def]
    """Every value of every row of every table, as text."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return "\n".join(
            repr(tuple(row))
            for table in metadata.sorted_tables
            for row in conn.execute(select(table))
        )


def test_the_database_and_logs_hold_no_secret_in_plain_text(
    farm: Farm, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr("manager.cli.configure_logging", lambda *args: None)  # keep caplog's
    secrets = [farm.user_key, farm.admin_key, farm.other_user_key, farm.runner_key, CLIENT_SECRET]
    secrets += list(PASSWORDS)
    configure(farm, localauth=True, registration=True)
    keyring = farm.client.app.state.keyring  # type: ignore[attr-defined]
    with session_scope(engine_of(farm)) as session:
        save_oidc_provider(
            session,
            keyring,
            "sso",
            discovery_url="https://sso.example/",
            client_id="client",
            client_secret=CLIENT_SECRET,
        )

    # A password set by an admin from the CLI, one by self-registration, one by a change.
    cli = ["manager", "--db", farm.settings.db, "--storage", str(farm.settings.storage), "config"]
    assert main([*cli, "set", "password", "artist@example.com", PASSWORDS[0]]) == 0
    assert main([*cli, "init-test", "--force"]) == 0
    secrets += [TEST_ADMIN_PASSWORD, TEST_RUNNER_KEY]
    me = browser(farm)
    assert login(me, "artist@example.com", PASSWORDS[0]).status_code == 200
    registered = browser(farm)
    made = registered.post(
        "/api/auth/register", json={"email": "new@example.com", "password": PASSWORDS[1]}
    )
    assert made.status_code == 201
    change = {"current_password": PASSWORDS[1], "new_password": PASSWORDS[2]}
    headers = {CSRF_HEADER: made.json()["csrf_token"]}
    assert (
        registered.post("/api/auth/password/change", json=change, headers=headers).status_code
        == 204
    )
    new_key = registered.post("/api/auth/keys", json={"name": "addon"}, headers=headers).json()[
        "key"
    ]
    secrets.append(new_key)
    for client in (me, registered):
        token = client.cookies[SESSION_COOKIE].rpartition(".")[0]
        secrets += [token, client.cookies[SESSION_COOKIE]]
    assert login(browser(farm), "artist@example.com", "a wrong guess at it").status_code == 401
    secrets.append("a wrong guess at it")

    # The key part of an API key alone (without ff_) must not be there either.
    secrets += [key.removeprefix("ff_") for key in secrets if key.startswith("ff_")]
    stored = _everything_stored(engine_of(farm))
    assert "argon2id" in stored and "fernet:" in stored  # what is there instead
    assert [s for s in secrets if s in stored] == []

    if farm.settings.database_url.startswith("sqlite"):
        engine_of(farm).dispose()
        files = list(
            Path(farm.settings.database_url.removeprefix("sqlite:///")).parent.glob("framefarm.db*")
        )
        raw = b"".join(path.read_bytes() for path in files)
        assert [s for s in secrets if s.encode() in raw] == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert [s for s in secrets if s in logged] == []


def test_the_key_file_is_made_once_readable_only_by_its_owner(tmp_path: Path):
    settings = ManagerSettings(db=str(tmp_path / "f.db"), storage=tmp_path / "storage")
    first = keyring_for(settings)
    sealed = first.encrypt("client secret")
    key_file = tmp_path / "storage" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    assert (
        keyring_for(settings).decrypt(sealed, what="it") == "client secret"
    )  # same file, same key
    assert first.derive("session cookie") != first.derive("csrf")


def test_a_secret_key_from_the_environment_makes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FRAMEFARM_SECRET_KEY", "a long random string from the wrangler")
    settings = ManagerSettings(db=str(tmp_path / "f.db"), storage=tmp_path / "storage")
    keyring = keyring_for(settings)
    sealed = keyring.encrypt("client secret")
    assert keyring.source == "FRAMEFARM_SECRET_KEY"
    assert not (tmp_path / "storage").exists()
    other = Keyring(secret_key=SecretStr("another key"), key_file=tmp_path / "unused")
    with pytest.raises(SecretKeyMismatch, match="another secret key"):
        other.decrypt(sealed, what="the client secret of sso")


def test_a_changed_secret_key_says_what_to_do_at_sign_in(farm: Farm, tmp_path: Path):
    with session_scope(engine_of(farm)) as session:
        wrong = Keyring(secret_key=SecretStr("not this farm's key"), key_file=tmp_path / "k")
        save_oidc_provider(
            session,
            wrong,
            "sso",
            discovery_url="https://sso.example/",
            client_id="c",
            client_secret="s",
        )
    response = farm.client.get("/api/auth/sso/login", follow_redirects=False)
    assert response.status_code == 500
    assert response.json()["code"] == "secret_key_mismatch"
    assert "set it again" in response.json()["message"]
    with Session(engine_of(farm)) as session:
        assert configured_providers(session)["sso"].encrypted_secret.startswith("fernet:")
