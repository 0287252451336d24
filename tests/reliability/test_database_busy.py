"""A database held busy by another process: 503 with Retry-After, and the clients retry."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from framefarm.submit import RetryingTransport
from tests.reliability.conftest import ServedManager

LOCK_SECONDS = 24.0
"""Writers of one manager queue for the database one at a time and each waits up to the 10 s
busy timeout, so two writers in this window both give up once before it ends."""


def hold_write_lock(db: Path, seconds: float, taken: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        taken.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_busy_database_is_503_and_the_submit_command_retries(
    served_manager: ServedManager, scene_bpy: Path
) -> None:
    taken = threading.Event()
    locker = threading.Thread(
        target=hold_write_lock, args=(served_manager.root / "framefarm.db", LOCK_SECONDS, taken)
    )
    locker.start()
    try:
        assert taken.wait(10)
        started = time.monotonic()
        submit = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "framefarm",
                "submit",
                str(scene_bpy),
                "--frames",
                "1-2",
                "--name",
                "submitted while busy",
                "--manager",
                served_manager.url,
                "--api-key",
                served_manager.user_key,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with served_manager.client() as client:
            busy = client.post(f"/api/jobs/{served_manager.job_id}/pause")
        assert busy.status_code == 503, busy.text
        assert busy.json()["code"] == "busy"
        assert float(busy.headers["Retry-After"]) > 0
        out, err = submit.communicate(timeout=60)
    finally:
        locker.join()
    assert submit.returncode == 0, err
    assert "answered 503; retrying" in err
    assert time.monotonic() - started >= LOCK_SECONDS - 1
    with served_manager.client() as client:
        names = [job["name"] for job in client.get("/api/jobs").json()["jobs"]]
    assert names.count("submitted while busy") == 1


def test_the_retrying_transport_gives_up_after_its_time() -> None:
    calls: list[float] = []
    now = [0.0]

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(now[0])
        return httpx.Response(503, headers={"Retry-After": "2"}, json={"code": "busy"})

    def sleep(seconds: float) -> None:
        now[0] += seconds

    transport = RetryingTransport(
        httpx.MockTransport(busy), give_up_after=5, sleep=sleep, clock=lambda: now[0]
    )
    with httpx.Client(transport=transport, base_url="http://farm") as client:
        assert client.post("/api/jobs", content=b"x").status_code == 503
    assert calls == [0.0, 2.0, 4.0]
