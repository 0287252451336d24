"""Helpers for the auth tests: settings, passwords and browser sign-in against a real app."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from manager.auth.passwords import set_password
from manager.db import session_scope
from manager.farm_settings import set_setting
from manager.users import get_user_by_email
from tests.manager.conftest import Farm

PASSWORD = "correct horse battery"


def engine_of(farm: Farm) -> Engine:
    engine: Engine = farm.client.app.state.write_engine  # type: ignore[attr-defined]
    return engine


def configure(farm: Farm, **values: Any) -> None:
    """Store farm settings: ``configure(farm, localauth=True, session_hours=2)``."""
    with session_scope(engine_of(farm)) as session:
        for name, value in values.items():
            set_setting(session, name.replace("_", "-"), value)


def give_password(farm: Farm, email: str, password: str = PASSWORD) -> None:
    with session_scope(engine_of(farm)) as session:
        set_password(session, get_user_by_email(session, email), password)


def browser(farm: Farm) -> TestClient:
    """Another browser on the same app: its own cookie jar."""
    return TestClient(farm.client.app)


def login(client: TestClient, email: str, password: str = PASSWORD) -> Response:
    return client.post("/api/auth/login", json={"email": email, "password": password})


def signed_in_browser(farm: Farm, email: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A browser signed in as ``email`` (local auth on), and its CSRF token."""
    configure(farm, localauth=True)
    give_password(farm, email, password)
    client = browser(farm)
    response = login(client, email, password)
    assert response.status_code == 200, response.text
    return client, response.json()["csrf_token"]


def assert_error(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    assert body["message"]
