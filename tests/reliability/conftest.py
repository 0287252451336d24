"""A real manager process shared by a module's tests, and the manager tests' in-process farm."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from framefarm.demo import free_port, wait_until_healthy
from manager.apikeys import create_api_key
from manager.db import make_engine, migrate, session_scope
from manager.settings import database_url
from manager.users import create_user
from shared.wire import ApiKeyScope
from tests.manager.conftest import farm, manager_settings  # noqa: F401 - shared fixtures
from tests.runner.conftest import slow_scene  # noqa: F401


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


def start_manager(root: Path, db: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(root / "manager.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "framefarm",
                "manager",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                str(db),
                "--storage",
                str(root / "storage"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


@pytest.fixture(scope="module")
def served_manager(
    tmp_path_factory: pytest.TempPathFactory, scene_bpy: Path
) -> Iterator[ServedManager]:
    root = tmp_path_factory.mktemp("served-manager")
    db = root / "framefarm.db"
    engine = make_engine(database_url(str(db)))
    migrate(engine)
    with session_scope(engine) as session:
        artist = create_user(session, email="artist@example.com")
        other = create_user(session, email="other@example.com")
        admin = create_user(session, email="admin@example.com", is_admin=True)
        keys = [
            create_api_key(session, name="artist", scope=ApiKeyScope.USER, user=artist).key,
            create_api_key(session, name="other", scope=ApiKeyScope.USER, user=other).key,
            create_api_key(session, name="admin", scope=ApiKeyScope.USER, user=admin).key,
            create_api_key(session, name="nodes", scope=ApiKeyScope.RUNNER).key,
        ]
    engine.dispose()
    port = free_port()
    env = {**os.environ, "HOME": str(root / "home"), "PYTHONUNBUFFERED": "1"}
    process = start_manager(root, db, port, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        with open(scene_bpy, "rb") as blend:
            created = httpx.post(
                f"{url}/api/jobs",
                headers={"Authorization": f"Bearer {keys[0]}"},
                data={"frames": "1-4"},
                files={"file": ("scene.blend", blend)},
                timeout=30,
            )
        assert created.status_code == 202, created.text
        yield ServedManager(url, root, *keys, job_id=created.json()["id"], process=process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
