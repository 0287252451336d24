"""Manager fixtures: a real app on a real SQLite file, users and API keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from manager.apikeys import create_api_key
from manager.app import create_app
from manager.db import make_engine, migrate, session_scope
from manager.fast_lane import RunnerFastLane
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


class Spy:
    """Counts the requests the fast lane hands on to FastAPI."""

    def __init__(self, lane: RunnerFastLane) -> None:
        self.inner, self.paths = lane.app, list[str]()
        lane.app = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await self.inner(scope, receive, send)


def fast_lane_of(farm: Farm) -> Any:
    lane: Any = farm.client.app
    lane = lane.middleware_stack
    while not isinstance(lane, RunnerFastLane):
        lane = lane.app
    return lane


@pytest.fixture
def spy(farm: Farm) -> Iterator[Spy]:
    farm.client.get("/healthz")  # (the middleware stack is built on the first request)
    layer = fast_lane_of(farm)
    watcher = Spy(layer)
    yield watcher
    layer.app = watcher.inner
