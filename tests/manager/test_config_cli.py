"""``framefarm manager config``: settings, users, keys and providers, seen by a real app."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from framefarm.cli import main
from manager.app import create_app
from manager.auth.providers import configured_providers
from manager.config_cli import TEST_ADMIN_EMAIL, TEST_ADMIN_PASSWORD, TEST_RUNNER_KEY
from manager.db import make_engine
from manager.farm_settings import MASK, get_setting
from manager.settings import ManagerSettings

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def settings(tmp_path: Path) -> ManagerSettings:
    return ManagerSettings(db=str(tmp_path / "farm.db"), storage=tmp_path / "storage")


@pytest.fixture
def config(
    settings: ManagerSettings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Run:
    """``config("show")`` runs ``framefarm manager --db … config show``: (exit, out, err)."""
    monkeypatch.setattr("manager.cli.configure_logging", lambda *args: None)

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        base = ["manager", "--db", settings.db, "--storage", str(settings.storage), "config"]
        code = main([*base, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _app(settings: ManagerSettings) -> TestClient:
    return TestClient(create_app(settings))


def _stored(settings: ManagerSettings, name: str) -> object:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return get_setting(session, name)
    finally:
        engine.dispose()


def test_enable_disable_and_show(config: Run, settings: ManagerSettings):
    assert config("enable", "localauth")[:2] == (0, "localauth enabled\n")
    code, out, _ = config("enable", "registration")
    assert code == 0 and "registration enabled" in out
    assert config("disable", "registration")[0] == 0
    code, out, _ = config("show")
    assert code == 0
    lines = {line.split("=")[0].strip(): line for line in out.splitlines() if "=" in line}
    assert lines["localauth"].split("=")[1].split("#")[0].strip() == "true"
    assert lines["registration"].split("=")[1].split("#")[0].strip() == "false"
    assert "frames-per-render-task" in lines and "google-oauth" in lines
    assert "secret key" in out and str(settings.storage / "secret.key") in out
    code, _, err = config("enable", "frames-per-render-task")
    assert code == 2 and "not an on/off setting" in err


def test_users_sign_in_with_the_password_given(config: Run, settings: ManagerSettings):
    assert config("enable", "localauth")[0] == 0
    code, out, _ = config("add", "user", "Wrangler@Studio.example", "a long password", "--admin")
    assert code == 0 and "added user wrangler@studio.example" in out and "admin" in out
    code, out, _ = config("add", "user", "sso@studio.example")
    assert code == 0 and "no password" in out
    assert config("add", "user", "piped@studio.example", "-", stdin="from stdin pw\n")[0] == 0
    code, _, err = config("add", "user", "weak@studio.example", "short")
    assert code == 1 and "too short" in err
    assert config("add", "user", "wrangler@studio.example")[0] == 1  # exists

    with _app(settings) as client:
        signed_in = client.post(
            "/api/auth/login",
            json={"email": "wrangler@studio.example", "password": "a long password"},
        )
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["user"]["is_admin"] is True
        piped = {"email": "piped@studio.example", "password": "from stdin pw"}
        assert client.post("/api/auth/login", json=piped).status_code == 200

    code, out, _ = config("list", "users")
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"wrangler@studio.example", "sso@studio.example", "piped@studio.example"}
    assert " yes " in rows["wrangler@studio.example"]

    assert config("set", "password", "sso@studio.example", "now has a password")[0] == 0
    code, out, _ = config("remove", "user", "piped@studio.example")
    assert code == 0 and "removed user piped@studio.example" in out
    assert config("remove", "user", "nobody@studio.example")[0] == 1
    with _app(settings) as client:
        sso = {"email": "sso@studio.example", "password": "now has a password"}
        assert client.post("/api/auth/login", json=sso).status_code == 200
        piped = {"email": "piped@studio.example", "password": "from stdin pw"}
        assert client.post("/api/auth/login", json=piped).status_code == 401


def test_api_keys_are_printed_once_listed_and_revoked(config: Run, settings: ManagerSettings):
    assert config("add", "user", "artist@studio.example")[0] == 0
    code, runner_key, err = config("add", "apikey", "render nodes", "--scope", "runner")
    runner_key = runner_key.strip()
    assert code == 0 and runner_key.startswith("ff_") and "shown only this once" in err
    code, user_key, _ = config(
        "add", "apikey", "laptop", "--scope", "user", "--user", "artist@studio.example"
    )
    user_key = user_key.strip()
    assert code == 0
    assert config("add", "apikey", "x", "--scope", "user")[0] == 2
    assert (
        config("add", "apikey", "x", "--scope", "runner", "--user", "artist@studio.example")[0] == 2
    )

    with _app(settings) as client:
        register = client.post(
            "/api/runner/register",
            json={"name": "n1"},
            headers={"Authorization": f"Bearer {runner_key}"},
        )
        assert register.status_code == 200
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {user_key}"})
        assert me.json()["user"]["email"] == "artist@studio.example"

    code, out, _ = config("list", "apikeys")
    assert code == 0 and runner_key not in out and user_key not in out
    assert runner_key[:10] in out and "artist@studio.example" in out
    assert config("remove", "apikey", runner_key[:10])[0] == 0  # by prefix
    laptop_id = next(line.split()[0] for line in out.splitlines() if "laptop" in line)
    assert config("remove", "apikey", laptop_id)[0] == 0  # by id
    with _app(settings) as client:
        assert (
            client.get("/api/auth/me", headers={"Authorization": f"Bearer {user_key}"}).status_code
            == 401
        )
        gone = client.post(
            "/api/runner/register",
            json={"name": "n1"},
            headers={"Authorization": f"Bearer {runner_key}"},
        )
        assert gone.status_code == 401


def test_oauth_providers_are_stored_encrypted_and_shown_masked(
    config: Run, settings: ManagerSettings
):
    code, out, _ = config(
        "set",
        "google-oauth",
        "google-id.apps",
        "google-client-secret",
        "--redirect-url",
        "https://farm.example/api/auth/google/callback",
    )
    assert code == 0 and "/api/auth/google/login" in out
    assert (
        config("set", "discord-oauth", "discord-id", "-", stdin="discord-client-secret\n")[0] == 0
    )
    code, _, _ = config(
        "set",
        "oidc",
        "keycloak",
        "https://sso.example/realms/studio",
        "kc-id",
        "kc-client-secret",
        "--label",
        "Studio SSO",
    )
    assert code == 0
    assert config("set", "oidc", "me", "https://x.example", "a", "b")[0] == 1  # reserved name
    assert config("set", "google-oauth", "only-an-id")[0] == 2

    code, out, _ = config("show")
    assert "google-client-secret" not in out and "discord-client-secret" not in out
    assert "kc-client-secret" not in out and MASK in out
    assert "google-id.apps" in out and "https://farm.example/api/auth/google/callback" in out
    stored = json.dumps(_stored(settings, "google-oauth"))
    assert "google-client-secret" not in stored and "fernet:" in stored

    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        providers = configured_providers(session)
    engine.dispose()
    assert (
        providers["keycloak"].discovery_url
        == "https://sso.example/realms/studio/.well-known/openid-configuration"
    )
    with _app(settings) as client:
        keyring = client.app.state.keyring  # type: ignore[attr-defined]
        assert providers["discord"].client_secret(keyring) == "discord-client-secret"
        listed = client.get("/api/auth/providers").json()["providers"]
        assert [(p["name"], p["label"]) for p in listed] == [
            ("google", "Google"),
            ("discord", "Discord"),
            ("keycloak", "Studio SSO"),
        ]
    assert config("remove", "provider", "keycloak")[0] == 0
    assert config("remove", "provider", "google")[0] == 0
    assert config("remove", "provider", "google")[0] == 1
    assert list(_stored(settings, "oidc-providers")) == []  # type: ignore[call-overload]


def test_plain_settings_are_set_by_name(config: Run, settings: ManagerSettings):
    code, out, _ = config("set", "frames-per-render-task", "4")
    assert code == 0 and out.strip() == "frames-per-render-task = 4"
    assert _stored(settings, "frames-per-render-task") == 4
    code, _, err = config("set", "frames-per-render-task", "0")
    assert code == 1 and "at least 1" in err
    code, _, err = config("set", "no-such-thing", "1")
    assert code == 2 and "frames-per-render-task" in err


def test_init_test_is_loud_repeatable_and_refuses_real_farms(
    config: Run, settings: ManagerSettings
):
    code, out, err = config("init-test")
    assert code == 0 and "DEVELOPMENT ONLY" in err and TEST_RUNNER_KEY in out
    assert config("init-test")[0] == 0  # again: nothing breaks, nothing doubles
    with _app(settings) as client:
        admin = {"email": TEST_ADMIN_EMAIL, "password": TEST_ADMIN_PASSWORD}
        signed_in = client.post("/api/auth/login", json=admin)
        assert signed_in.status_code == 200 and signed_in.json()["user"]["is_admin"] is True
        runner = client.post(
            "/api/runner/register",
            json={"name": "dev"},
            headers={"Authorization": f"Bearer {TEST_RUNNER_KEY}"},
        )
        assert runner.status_code == 200
        keys = client.get("/api/admin/keys")  # with the session cookie of the sign-in
        assert [k["name"] for k in keys.json()] == ["test runner"]

    assert config("add", "user", "real@studio.example")[0] == 0
    code, _, err = config("init-test")
    assert code == 2 and "real@studio.example" in err and "--force" in err
    assert config("init-test", "--force")[0] == 0


def test_the_installed_command_runs_config(settings: ManagerSettings, tmp_path: Path):
    env = {**os.environ, "FRAMEFARM_DB": settings.db, "FRAMEFARM_STORAGE": str(settings.storage)}
    done = subprocess.run(
        [sys.executable, "-m", "framefarm", "manager", "config", "enable", "localauth"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _stored(settings, "localauth") is True
    # The old commands still work next to config.
    users = subprocess.run(
        [sys.executable, "-m", "framefarm", "manager", "users", "create", "old@studio.example"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert users.returncode == 0, users.stderr
