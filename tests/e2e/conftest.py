"""A live farm: a real uvicorn manager process and real runner processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from framefarm.demo import free_port, wait_until_healthy
from framefarm.submit import make_client
from manager.apikeys import create_api_key
from manager.db import make_engine, migrate, session_scope
from manager.settings import database_url
from manager.users import create_user
from runner.blender import BlenderBackend
from shared.wire import ApiKeyScope


@dataclass
class LiveFarm:
    root: Path
    url: str
    user_key: str
    runner_key: str
    env: dict[str, str]
    runners: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_runner(self, backend: BlenderBackend, name: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"runner-{name}.log", "ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "framefarm",
                    "runner",
                    "--manager",
                    self.url,
                    "--api-key",
                    self.runner_key,
                    "--name",
                    name,
                    "--blender",
                    backend.path,
                    "--workdir",
                    str(self.root / f"runner-{name}"),
                    "--threads",
                    "2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self.runners.append(process)
        return process

    @property
    def job_types_dir(self) -> Path:
        return self.root / "job-types"

    def client(self) -> httpx.Client:
        return make_client(self.url, self.user_key)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.root.glob("*.log"))
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def live_farm(tmp_path: Path) -> Iterator[LiveFarm]:
    with run_live_farm(tmp_path) as farm:
        yield farm


@contextmanager
def run_live_farm(tmp_path: Path) -> Iterator[LiveFarm]:
    """A manager with a user and a runner key in ``tmp_path``; runners stop on exit."""
    db = tmp_path / "framefarm.db"
    engine = make_engine(database_url(str(db)))
    migrate(engine)
    with session_scope(engine) as session:
        user = create_user(session, email="artist@example.com")
        user_key = create_api_key(session, name="artist", scope=ApiKeyScope.USER, user=user).key
        runner_key = create_api_key(session, name="nodes", scope=ApiKeyScope.RUNNER).key
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
        "FRAMEFARM_JOB_TYPES_DIR": str(tmp_path / "job-types"),
    }
    (tmp_path / "job-types").mkdir()
    with open(tmp_path / "manager.log", "ab") as log:
        manager = subprocess.Popen(
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
                str(tmp_path / "storage"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    farm = LiveFarm(tmp_path, f"http://127.0.0.1:{port}", user_key, runner_key, env)
    try:
        wait_until_healthy(farm.url, manager)
        yield farm
    finally:
        for runner in farm.runners:
            _stop(runner)
        _stop(manager)
