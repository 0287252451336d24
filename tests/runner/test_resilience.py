"""The manager stops and starts again in the middle of a task: nothing is lost or doubled."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.runner.farm import RunnerFarm, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def test_manager_restart_mid_task_loses_and_doubles_nothing(
    farm: RunnerFarm, slow_scene: Path
) -> None:
    farm.start_runner("node-1", "--blender", sys.executable)
    job = farm.submit(slow_scene, "1-4", chunk_size=4)
    outputs = farm.storage / "outputs" / str(job["id"])

    # Stop the manager as soon as the first frame arrived: three are still to come.
    wait_for(lambda: any(outputs.glob("*.exr")), 120, "the first frame on the manager", farm)
    farm.stop_manager()
    runner_log = farm.root / "runner-node-1.log"
    wait_for(
        lambda: "manager unreachable, reports wait on disk" in runner_log.read_text(),
        30,
        "the runner to notice the manager is gone",
        farm,
    )
    queue = farm.root / "runner-node-1" / "reports"
    wait_for(lambda: len(list(queue.glob("*.json"))) >= 2, 30, "reports queued on disk", farm)
    farm.start_manager()

    def finished() -> dict | None:
        status = farm.get(f"/api/jobs/{job['id']}")
        return status if status["status"] in ("completed", "failed", "canceled") else None

    status = wait_for(finished, 120, "the job to finish", farm)
    assert status["status"] == "completed", farm.logs()
    assert status["frames_done"] == 4

    listing = farm.get(f"/api/jobs/{job['id']}/outputs")
    names = [o["name"] for o in listing["outputs"]]
    assert sorted(names) == [f"frame_{f:06d}.exr" for f in (1, 2, 3, 4)]  # each exactly once
    assert sorted(p.name for p in outputs.glob("*.exr")) == sorted(names)
    tasks = farm.get(f"/api/jobs/{job['id']}/tasks")
    assert [(t["status"], t["attempts"]) for t in tasks] == [("completed", 1)]
    assert "manager reachable again; sending" in runner_log.read_text()
    wait_for(lambda: not list(queue.glob("*.json")), 10, "the queue to empty", farm)
    assert not list((queue / "files").iterdir())


def test_a_runner_that_crashed_sends_its_finished_task_before_registering_again(
    farm: RunnerFarm, slow_scene: Path
) -> None:
    runner = farm.start_runner("node-1", "--blender", sys.executable)
    job = farm.submit(slow_scene, "1-4", chunk_size=4)
    outputs = farm.storage / "outputs" / str(job["id"])
    wait_for(lambda: any(outputs.glob("*.exr")), 120, "the first frame on the manager", farm)
    farm.stop_manager()
    runner_log = farm.root / "runner-node-1.log"
    wait_for(lambda: "task 1 completed" in runner_log.read_text(), 60, "the render", farm)
    runner.kill()  # a crash: the completion is only on disk
    runner.wait()
    farm.start_runner("node-1", "--blender", sys.executable)  # back before the manager
    farm.start_manager()

    def finished() -> dict | None:
        status = farm.get(f"/api/jobs/{job['id']}")
        return status if status["status"] in ("completed", "failed", "canceled") else None

    status = wait_for(finished, 120, "the job to finish", farm)
    assert status["status"] == "completed", farm.logs()
    [task] = farm.get(f"/api/jobs/{job['id']}/tasks")
    assert task["attempts"] == 1  # delivered, not rendered again
    names = [o["name"] for o in farm.get(f"/api/jobs/{job['id']}/outputs")["outputs"]]
    assert sorted(names) == [f"frame_{f:06d}.exr" for f in (1, 2, 3, 4)]
    log = runner_log.read_text()
    assert "reports left from the last run" in log
    assert log.count("frame 4 rendered") == 1
