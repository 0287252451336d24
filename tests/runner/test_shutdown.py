"""Ctrl-C on a runner in the middle of a real render: once finishes the task, twice hands it
back at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runner.farm import RunnerFarm, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def blender_processes_under(folder: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines() if str(folder) in line and "render" in line]


def first_frame_arrived(farm: RunnerFarm, job_id: int) -> None:
    outputs = farm.storage / "outputs" / str(job_id)
    wait_for(lambda: any(outputs.glob("*.exr")), 120, "the first frame on the manager", farm)


def test_first_sigint_finishes_the_task_then_exits(farm: RunnerFarm, slow_scene: Path) -> None:
    runner = farm.start_runner("node-1", "--blender", sys.executable)
    job = farm.submit(slow_scene, "1-4", chunk_size=2)  # two tasks
    first_frame_arrived(farm, job["id"])
    runner.send_signal(signal.SIGINT)
    assert runner.wait(60) == 0, farm.logs()

    first, second = sorted(farm.get(f"/api/jobs/{job['id']}/tasks"), key=lambda t: t["id"])
    assert (first["frames"], first["status"]) == ([1, 2], "completed")
    assert (second["frames"], second["status"]) == ([3, 4], "queued")  # the runner left
    assert second["attempts"] == 0
    names = [o["name"] for o in farm.get(f"/api/jobs/{job['id']}/outputs")["outputs"]]
    assert sorted(names) == ["frame_000001.exr", "frame_000002.exr"]
    log = (farm.root / "runner-node-1.log").read_text()
    assert "SIGINT: finishing the current task, then exiting" in log
    assert blender_processes_under(farm.root / "runner-node-1") == []


def test_second_sigint_stops_blender_and_hands_the_task_back_at_once(
    farm: RunnerFarm, slow_scene: Path
) -> None:
    runner = farm.start_runner("node-1", "--blender", sys.executable)
    job = farm.submit(slow_scene, "1-4", chunk_size=4)
    first_frame_arrived(farm, job["id"])
    runner.send_signal(signal.SIGINT)
    time.sleep(0.3)
    runner.send_signal(signal.SIGINT)
    started = time.monotonic()
    assert runner.wait(30) == 0, farm.logs()
    assert time.monotonic() - started < 15
    assert blender_processes_under(farm.root / "runner-node-1") == []

    # Requeued by the runner's own release, not by a lease running out (60 s here).
    [task] = farm.get(f"/api/jobs/{job['id']}/tasks")
    assert task["status"] == "queued", farm.logs()
    assert "the runner is shutting down" in (task["activity"] or "")
    assert task["runner_id"] is None
    log = (farm.root / "runner-node-1.log").read_text()
    assert "second SIGINT: aborting the current task" in log
    assert "frame 4 rendered" not in log
