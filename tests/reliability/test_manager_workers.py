"""Several manager processes on one port (``framefarm manager --workers N``, PostgreSQL): a
farm served by two finishes its job with every frame once though one of them is killed
mid-job, and the killed one is replaced; SQLite refuses more than one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from framefarm.demo import free_port
from manager.cli import settings_environment
from manager.settings import ManagerSettings
from tests.reliability.test_faults import (
    assert_every_frame_once,
    children_of,
    finished,
    first_frame_arrived,
)
from tests.runner.farm import RunnerFarm, wait_for


def workers_of(pid: int) -> list[int]:
    """The manager's worker processes (its other child is multiprocessing's resource tracker)."""
    found = []
    for child in children_of(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue  # it just ended
    return sorted(found)


def completions(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).raise_for_status().text
    (line,) = (
        line for line in text.splitlines() if line.startswith("framefarm_tasks_completed_total")
    )
    return float(line.split()[-1])


@pytest.mark.e2e
@pytest.mark.blender
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_finish_a_job_though_one_is_killed_mid_job(
    tmp_path: Path, slow_scene: Path, database_url: str
) -> None:
    farm = RunnerFarm(tmp_path, db=database_url, manager_args=["--workers", "2"])
    temp = tmp_path / "tmp"  # where the workers' metrics folder goes (and Blender's files)
    temp.mkdir()
    farm.env["TMPDIR"] = str(temp)
    farm.start_manager()
    try:
        assert farm.manager is not None
        supervisor = farm.manager.pid

        def two_workers() -> list[int] | None:
            workers = workers_of(supervisor)
            return workers if len(workers) == 2 else None

        first = wait_for(two_workers, 30, "two manager workers", farm)
        farm.start_runner("node-1", "--blender", sys.executable)
        farm.start_runner("node-2", "--blender", sys.executable)
        job = farm.submit(slow_scene, "1-4")  # four one-frame tasks, two runners
        first_frame_arrived(farm, job)
        os.kill(first[0], signal.SIGKILL)

        def replaced() -> list[int] | None:
            workers = two_workers()
            return workers if workers and first[0] not in workers else None

        wait_for(replaced, 30, "a worker in place of the killed one", farm)
        finished(farm, job)
        tasks = farm.get(f"/api/jobs/{job['id']}/tasks")
        assert [task["status"] for task in tasks] == ["completed"] * 4
        assert_every_frame_once(farm, job)
        # Each scrape on a connection of its own, answered by either worker, counts the
        # completions of both and of the killed one (a completion retried after the kill
        # counts again).
        completed = {completions(farm.url) for _ in range(8)}
        assert len(completed) == 1 and min(completed) >= 4, completed
        assert len(list(temp.glob("framefarm-metrics-*"))) == 1
    finally:
        farm.close()
    assert not workers_of(supervisor), "the workers outlived their manager"
    assert not list(temp.glob("framefarm-metrics-*")), "the metrics folder outlived the manager"


def test_several_workers_on_sqlite_are_refused_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "framefarm.db"
    result = subprocess.run(
        [sys.executable, "-m", "framefarm", "manager", "--workers", "2", "--db", str(db)]
        + ["--storage", str(tmp_path / "storage"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    assert "--workers 2 needs PostgreSQL" in result.stderr
    assert "run one worker" in result.stderr
    assert not db.exists()  # nothing made before the refusal


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [("--workers", "0", "greater than or equal to 1"), ("--port", "70000", "less than or equal")],
)
def test_a_setting_out_of_range_is_refused_with_its_flag_not_a_traceback(
    tmp_path: Path, flag: str, value: str, says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "framefarm", "manager", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    name = flag.removeprefix("--").upper()
    assert f"error: {flag} or FRAMEFARM_{name}: Input should be {says}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # no database, no storage


def test_workers_get_the_command_lines_settings_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ManagerSettings(
        port=9123,
        host="127.0.0.1",
        workers=3,
        db="postgresql+psycopg://farm:pass@db.example/farm",
        storage=tmp_path / "storage",
        log_file=tmp_path / "manager.log",
        log_level="WARNING",
        verbose=True,
        runner_timeout=12.5,
        secret_key="s" * 40,  # type: ignore[arg-type]
    )
    for name in list(os.environ):
        if name.startswith("FRAMEFARM_"):
            monkeypatch.delenv(name)
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    assert ManagerSettings() == settings
