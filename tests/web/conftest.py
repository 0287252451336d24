"""Web page fixtures: a real app (TestClient) on a real database, with jobs, outputs and logs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, sync_playwright
from sqlmodel import Session

from manager.apikeys import create_api_key
from manager.app import create_app
from manager.db import make_engine, migrate, session_scope
from manager.models import Output, Runner, utcnow
from manager.settings import ManagerSettings
from manager.users import create_user, get_user_by_email
from shared.wire import ApiKeyScope, RunnerStatus, TaskStatus
from tests.e2e.conftest import live_farm  # noqa: F401  (the live farm the browser tests use)
from tests.manager.factories import make_job


@dataclass
class WebFarm:
    client: TestClient
    settings: ManagerSettings
    artist_key: str
    other_key: str
    admin_key: str
    runner_key: str

    def as_key(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def session(self) -> Session:
        return Session(self.client.app.state.engine, expire_on_commit=False)  # type: ignore[attr-defined]


def write_exr(path: Path, rgba: np.ndarray) -> None:
    """An RGBA half-float EXR like Blender's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {name: rgba[..., i].astype(np.float16) for i, name in enumerate("RGBA")}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


@pytest.fixture
def web_farm(tmp_path: Path, database_url: str) -> Iterator[WebFarm]:
    settings = ManagerSettings(db=database_url, storage=tmp_path / "storage", runner_timeout=30)
    engine = make_engine(settings.database_url)
    migrate(engine)
    with session_scope(engine) as session:
        admin = create_user(session, email="admin@example.com", is_admin=True)
        artist = create_user(session, email="artist@example.com")
        other = create_user(session, email="other@example.com")
        keys = {
            "admin": create_api_key(session, name="a", scope=ApiKeyScope.USER, user=admin).key,
            "artist": create_api_key(session, name="u", scope=ApiKeyScope.USER, user=artist).key,
            "other": create_api_key(session, name="o", scope=ApiKeyScope.USER, user=other).key,
            "runner": create_api_key(session, name="r", scope=ApiKeyScope.RUNNER).key,
        }
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield WebFarm(
            client, settings, keys["artist"], keys["other"], keys["admin"], keys["runner"]
        )


@pytest.fixture
def rendering_job(web_farm: WebFarm) -> int:
    """The artist's 4-frame job: frames 1-2 done on node-01 with EXRs and a log, 3 rendering.

    Frame 1 took 10 s and frame 2 20 s, so the ETA of the two frames left is 30 s.
    """
    storage = web_farm.client.app.state.storage  # type: ignore[attr-defined]
    with web_farm.session() as session:
        artist = get_user_by_email(session, "artist@example.com")
        runner = Runner(name="node-01", status=RunnerStatus.WORKING, tags=["gpu"])
        runner.blender = {"kind": "bpy", "version": "5.0.1"}
        runner.last_seen_at = utcnow()
        session.add(runner)
        job, tasks = make_job(session, tasks=4, name="shot 010")
        job.owner_id = artist.id
        job.status = "active"
        session.add(job)
        session.flush()
        assert job.id is not None and runner.id is not None
        started = utcnow() - timedelta(seconds=60)
        for task, status in zip(tasks, ("completed", "completed", "active", "queued"), strict=True):
            task.status = status
            if status != TaskStatus.QUEUED:
                task.runner_id = runner.id
                task.started_at = started
                task.attempts = 1
            if status == TaskStatus.COMPLETED:
                task.frames_done = 1
                task.finished_at = started
            session.add(task)
        pixels = np.zeros((16, 32, 4), np.float32)
        pixels[:, :16] = (0.18, 0.18, 0.18, 1.0)  # left half grey and opaque, right transparent
        for frame, task in ((1, tasks[0]), (2, tasks[1])):
            name = f"frame_{frame:06d}.exr"
            path = storage.output_path(job.id, name)
            write_exr(path, pixels)
            session.add(
                Output(
                    job_id=job.id,
                    task_id=task.id,
                    name=name,
                    frame=frame,
                    size=path.stat().st_size,
                    sha256=f"{frame:064d}",
                    # frame 1 took 10 s, frame 2 (its own task) 20 s: ETA 15 s x 2 left / 1
                    created_at=started + timedelta(seconds=10 * frame),
                )
            )
        log = storage.task_log_path(job.id, tasks[2].id or 0)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(f"line {n}\n" for n in range(1, 501)))
        session.commit()
        return job.id


# ---------------------------------------------------------------------------------------
# A real browser: Debian's chromium driven by Playwright (which cannot download its own here)
# ---------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where page screenshots go: $FRAMEFARM_SCREENSHOTS, else the test's temp folder."""
    folder = Path(os.environ.get("FRAMEFARM_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no {CHROMIUM}: apt install chromium (make test installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
