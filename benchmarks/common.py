"""Helpers the benchmarks share: a real manager process, keys, and percentiles."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from manager.apikeys import create_api_key
from manager.db import make_engine, migrate, session_scope
from manager.settings import database_url
from manager.users import create_user
from shared.wire import ApiKeyScope


@dataclass
class Manager:
    url: str
    db_url: str
    runner_key: str
    user_key: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the manager process has used so far (Linux)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database(db: str) -> tuple[str, str, str]:
    """Migrate ``db`` and create a user key and a runner key; returns (url, runner, user)."""
    url = database_url(db)
    engine = make_engine(url)
    migrate(engine)
    with session_scope(engine) as session:
        user = create_user(session, email=f"bench-{time.time_ns()}@example.com", is_admin=True)
        runner_key = create_api_key(session, name="bench runners", scope=ApiKeyScope.RUNNER).key
        user_key = create_api_key(session, name="bench", scope=ApiKeyScope.USER, user=user).key
    engine.dispose()
    return url, runner_key, user_key


@contextmanager
def running_manager(workdir: Path, db: str | None = None, workers: int = 1) -> Iterator[Manager]:
    """A real manager (uvicorn) in its own process, or ``workers`` of them on one port, as a
    studio would run it."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = db or str(workdir / "framefarm.db")
    url, runner_key, user_key = prepare_database(db)
    port = free_port()
    log = open(workdir / "manager.log", "ab")  # noqa: SIM115 (closed below)
    wrapper = os.environ.get("FRAMEFARM_BENCH_WRAP", "").split()
    process = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "framefarm",
            "manager",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            url,
            "--storage",
            str(workdir / "storage"),
            "--log-level",
            "WARNING",
            "--workers",
            str(workers),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the manager did not start; see {workdir / 'manager.log'}")
            time.sleep(0.1)
        yield Manager(base, url, runner_key, user_key, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class Reply:
    """An answer, read whole: status, body, JSON."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:500]}")


TransportError = (aiohttp.ClientError, TimeoutError)
"""What a client raises when the connection fails or the answer takes too long."""


class SimClient:
    """One simulated runner's or viewer's HTTP client, with its own keep-alive connection.

    Built on aiohttp rather than httpx: the simulation shares the manager's two cores, and
    httpx spent about 1.5 ms of CPU per request here (a third of what the manager spent
    answering it), which the benchmarks would have measured as the manager's slowness.
    """

    def __init__(self, url: str, key: str) -> None:
        self._session = aiohttp.ClientSession(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Reply:
        query = {name: str(value) for name, value in (params or {}).items()}
        async with self._session.request(method, path, params=query, json=json) as response:
            return Reply(response.status, await response.read())

    async def get(self, path: str, **options: Any) -> Reply:
        return await self.request("GET", path, **options)

    async def post(self, path: str, **options: Any) -> Reply:
        return await self.request("POST", path, **options)

    async def aclose(self) -> None:
        await self._session.close()


def async_clients(url: str, key: str, count: int) -> list[SimClient]:
    """One client per simulated runner or viewer, as each has its own connection."""
    return [SimClient(url, key) for _ in range(count)]


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
