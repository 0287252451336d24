"""A real manager process shared by a module's tests, and the manager tests' in-process farm."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from manager.apikeys import create_api_key
from manager.db import make_engine, session_scope
from manager.settings import database_url
from manager.users import create_user
from shared.wire import ApiKeyScope
from tests.manager.conftest import farm, manager_settings  # noqa: F401 - shared fixtures
from tests.runner.conftest import slow_samples, slow_scene  # noqa: F401
from tests.runner.farm import RunnerFarm


@dataclass
class ServedManager:
    url: str
    root: Path
    user_key: str
    other_key: str
    admin_key: str
    runner_key: str
    job_id: int
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.root / "manager.log").read_text(errors="replace")

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.user_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}\n{self.log()[-3000:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def served_manager(
    tmp_path_factory: pytest.TempPathFactory, scene_bpy: Path
) -> Iterator[ServedManager]:
    root = tmp_path_factory.mktemp("served-manager")
    served = RunnerFarm(root)  # the artist's user key and a runner key
    engine = make_engine(database_url(str(served.db)))
    with session_scope(engine) as session:
        other = create_user(session, email="other@example.com")
        admin = create_user(session, email="admin@example.com", is_admin=True)
        other_key = create_api_key(session, name="other", scope=ApiKeyScope.USER, user=other)
        admin_key = create_api_key(session, name="admin", scope=ApiKeyScope.USER, user=admin)
    engine.dispose()
    served.start_manager()
    try:
        job = served.submit(scene_bpy, "1-4")
        assert served.manager is not None
        yield ServedManager(
            served.url,
            root,
            user_key=served.user_key,
            other_key=other_key.key,
            admin_key=admin_key.key,
            runner_key=served.runner_key,
            job_id=job["id"],
            process=served.manager,
        )
    finally:
        served.close()
