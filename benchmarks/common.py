"""Helpers the benchmarks share: a real manager process, keys, and percentiles."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
def running_manager(workdir: Path, db: str | None = None) -> Iterator[Manager]:
    """A real manager (uvicorn) in its own process, as a studio would run it."""
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


def async_clients(url: str, key: str, count: int) -> list[httpx.AsyncClient]:
    """One HTTP client per simulated runner or viewer, as each has its own connections.

    They share one TLS context: building one per client (httpx's default) costs about 50 ms
    each here, which for hundreds of clients would stall the simulation for seconds.
    """
    tls = ssl.create_default_context()
    return [
        httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(60.0),
            verify=tls,
        )
        for _ in range(count)
    ]


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
