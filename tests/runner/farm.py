"""A farm for runner tests: a real uvicorn manager that can be stopped and started again on
the same port, database and storage, and real runner processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from framefarm.demo import free_port, wait_until_healthy
from framefarm.submit import make_client, submit_blend
from manager.apikeys import create_api_key
from manager.db import make_engine, migrate, session_scope
from manager.settings import database_url
from manager.users import create_user
from shared.wire import ApiKeyScope


class RunnerFarm:
    """A real manager process and runner processes; the manager on SQLite in ``root``, or on
    the database ``db`` names, started with ``manager_args`` added to its command line."""

    def __init__(self, root: Path, db: str | None = None, manager_args: Sequence[str] = ()) -> None:
        self.root = root
        self.db = db or str(root / "framefarm.db")
        self.manager_args = list(manager_args)
        self.storage = root / "storage"
        engine = make_engine(database_url(self.db))
        migrate(engine)
        with session_scope(engine) as session:
            user = create_user(session, email="artist@example.com")
            self.user_key = create_api_key(
                session, name="artist", scope=ApiKeyScope.USER, user=user
            ).key
            self.runner_key = create_api_key(session, name="nodes", scope=ApiKeyScope.RUNNER).key
        engine.dispose()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOME": str(root / "home"),
            "PYTHONUNBUFFERED": "1",
            "FRAMEFARM_RUNNER_TIMEOUT": "60",
        }
        self.manager: subprocess.Popen[bytes] | None = None
        self.processes: list[subprocess.Popen[bytes]] = []

    def start_manager(self) -> None:
        with open(self.root / "manager.log", "ab") as log:
            self.manager = subprocess.Popen(
                [sys.executable, "-m", "framefarm", "manager", "--host", "127.0.0.1"]
                + ["--port", str(self.port), "--db", self.db, "--storage", str(self.storage)]
                + self.manager_args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_until_healthy(self.url, self.manager)

    def stop_manager(self) -> None:
        if self.manager is not None:
            stop_process(self.manager)
            self.manager = None

    def runner_argv(self, name: str, *extra: str) -> list[str]:
        return [
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
            "--workdir",
            str(self.root / f"runner-{name}"),
            "--threads",
            "2",
            *extra,
        ]

    def start_runner(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"runner-{name}.log", "ab") as log:
            process = subprocess.Popen(
                self.runner_argv(name, *extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self.processes.append(process)
        return process

    def client(self) -> httpx.Client:
        return make_client(self.url, self.user_key)

    def submit(self, blend: Path, frames: str, **options: Any) -> dict[str, Any]:
        with self.client() as client:
            job: dict[str, Any] = submit_blend(client, blend, frames=frames, **options)
        return job

    def get(self, path: str) -> Any:
        with self.client() as client:
            response = client.get(path)
            response.raise_for_status()
            return response.json()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-5000:]}"
            for path in sorted(self.root.glob("*.log"))
        )

    def close(self) -> None:
        for process in self.processes:
            stop_process(process)
        self.stop_manager()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, farm: RunnerFarm) -> Any:
    """Poll ``condition`` until it returns something true; fail with the farm's logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{farm.logs()}")


@contextmanager
def running_farm(root: Path) -> Iterator[RunnerFarm]:
    farm = RunnerFarm(root)
    farm.start_manager()
    try:
        yield farm
    finally:
        farm.close()
