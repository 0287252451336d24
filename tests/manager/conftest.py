"""Manager fixtures: a real app on a real SQLite file, users and API keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from manager.apikeys import create_api_key
from manager.app import create_app
from manager.db import make_engine, migrate, session_scope
from manager.settings import ManagerSettings
from manager.users import create_user
from shared.wire import ApiKeyScope


@dataclass
class Farm:
    client: TestClient
    settings: ManagerSettings
    user_key: str
    admin_key: str
    other_user_key: str
    runner_key: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def manager_settings(tmp_path: Path, database_url: str) -> ManagerSettings:
    return ManagerSettings(
        db=database_url,
        storage=tmp_path / "storage",
        runner_timeout=30,
    )


@pytest.fixture
def farm(manager_settings: ManagerSettings) -> Iterator[Farm]:
    engine = make_engine(manager_settings.database_url)
    migrate(engine)
    with session_scope(engine) as session:
        admin = create_user(session, email="admin@example.com", is_admin=True)
        artist = create_user(session, email="artist@example.com")
        other = create_user(session, email="other@example.com")
        keys = {
            "admin": create_api_key(session, name="a", scope=ApiKeyScope.USER, user=admin).key,
            "user": create_api_key(session, name="u", scope=ApiKeyScope.USER, user=artist).key,
            "other": create_api_key(session, name="o", scope=ApiKeyScope.USER, user=other).key,
            "runner": create_api_key(session, name="r", scope=ApiKeyScope.RUNNER).key,
        }
    engine.dispose()
    with TestClient(create_app(manager_settings)) as client:
        yield Farm(
            client=client,
            settings=manager_settings,
            user_key=keys["user"],
            admin_key=keys["admin"],
            other_user_key=keys["other"],
            runner_key=keys["runner"],
        )
