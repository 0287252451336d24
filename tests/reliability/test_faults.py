"""Faults on a real farm: a runner killed mid-frame, the manager killed mid-job, a runner cut
off from the manager and back. Every time the job completes with every frame exactly once.

The farm runs with a 4 s runner timeout and 1 s heartbeats instead of 30 s and 5 s, so a
runner is declared lost in seconds; the cut-off runner stays away for more than twice that
timeout, as 60 s is twice the default one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.partition import PartitionProxy
from tests.runner.farm import RunnerFarm, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.blender]

RUNNER_TIMEOUT = 4
FRAMES = [f"frame_{frame:06d}.exr" for frame in (1, 2, 3, 4)]


@pytest.fixture
def fast_farm(tmp_path: Path) -> Iterator[RunnerFarm]:
    farm = RunnerFarm(tmp_path)
    farm.env.update(FRAMEFARM_RUNNER_TIMEOUT=str(RUNNER_TIMEOUT), FRAMEFARM_HEARTBEAT_INTERVAL="1")
    farm.start_manager()
    try:
        yield farm
    finally:
        farm.close()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def kill_hard(process: Any) -> None:
    """SIGKILL the process and its Blender at once, as a machine that lost power."""
    for pid in [process.pid, *children_of(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def first_frame_arrived(farm: RunnerFarm, job: dict[str, Any]) -> None:
    outputs = farm.storage / "outputs" / str(job["id"])
    wait_for(lambda: any(outputs.glob("*.exr")), 120, "the first frame on the manager", farm)


def finished(farm: RunnerFarm, job: dict[str, Any]) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = farm.get(f"/api/jobs/{job['id']}")
        return status if status["status"] in ("completed", "failed", "canceled") else None

    status: dict[str, Any] = wait_for(done, 180, "the job to finish", farm)
    assert status["status"] == "completed", farm.logs()
    return status


def assert_every_frame_once(farm: RunnerFarm, job: dict[str, Any]) -> None:
    listing = farm.get(f"/api/jobs/{job['id']}/outputs")["outputs"]
    assert sorted(output["name"] for output in listing) == FRAMES
    stored = farm.storage / "outputs" / str(job["id"])
    assert sorted(path.name for path in stored.glob("*.exr")) == FRAMES
    assert not list(stored.glob("*.tmp")) and not any((farm.storage / "temp").iterdir())


def test_a_runner_killed_mid_frame_hands_its_task_to_another(
    fast_farm: RunnerFarm, slow_scene: Path
) -> None:
    farm = fast_farm
    doomed = farm.start_runner("node-a", "--blender", sys.executable)
    job = farm.submit(slow_scene, "1-4", chunk_size=4)
    first_frame_arrived(farm, job)
    [task] = farm.get(f"/api/jobs/{job['id']}/tasks")
    assert task["status"] == "active"
    lost_runner = task["runner_id"]
    kill_hard(doomed)

    farm.start_runner("node-b", "--blender", sys.executable)
    finished(farm, job)
    [task] = farm.get(f"/api/jobs/{job['id']}/tasks")
    assert task["runner_id"] not in (None, lost_runner)
    assert task["attempts"] == 1  # a lost runner is not the task's failure
    assert_every_frame_once(farm, job)


def test_the_manager_killed_mid_job_finishes_it_after_a_restart(
    tmp_path: Path, slow_scene: Path
) -> None:
    farm = RunnerFarm(tmp_path)  # default timeouts: the runner is not lost while it restarts
    farm.start_manager()
    try:
        farm.start_runner("node-1", "--blender", sys.executable)
        job = farm.submit(slow_scene, "1-4", chunk_size=2)
        first_frame_arrived(farm, job)
        assert farm.manager is not None
        kill_hard(farm.manager)
        farm.manager = None
        farm.start_manager()

        finished(farm, job)
        tasks = farm.get(f"/api/jobs/{job['id']}/tasks")
        assert [(t["status"], t["attempts"]) for t in tasks] == [("completed", 1)] * 2
        assert_every_frame_once(farm, job)
    finally:
        farm.close()


def test_a_runner_cut_off_and_back_loses_and_doubles_nothing(
    fast_farm: RunnerFarm, slow_scene: Path
) -> None:
    farm = fast_farm
    proxy = PartitionProxy(farm.port)
    try:
        argv = farm.runner_argv("node-a", "--blender", sys.executable)
        argv[argv.index(farm.url)] = proxy.url
        log_path = farm.root / "runner-node-a.log"
        with open(log_path, "ab") as log:
            cut_off = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=farm.env)
        farm.processes.append(cut_off)
        job = farm.submit(slow_scene, "1-4", chunk_size=4)
        first_frame_arrived(farm, job)
        [task] = farm.get(f"/api/jobs/{job['id']}/tasks")
        away_runner = task["runner_id"]
        proxy.cut()
        cut_at = time.monotonic()

        other = farm.start_runner("node-b", "--blender", sys.executable)
        finished(farm, job)
        [task] = farm.get(f"/api/jobs/{job['id']}/tasks")
        assert task["attempts"] == 1 and task["runner_id"] != away_runner
        time.sleep(max(0.0, 2 * RUNNER_TIMEOUT - (time.monotonic() - cut_at)))
        proxy.restore()

        # Back: what it finished while away is refused, not delivered twice, and dropped.
        queue = farm.root / "runner-node-a" / "reports"
        wait_for(
            lambda: "manager refused" in log_path.read_text() and not list(queue.glob("*.json")),
            60,
            "the stale reports to be refused and dropped",
            farm,
        )
        assert_every_frame_once(farm, job)

        # And it works again: with the other runner gone, it renders the next job.
        other.terminate()
        other.wait(30)
        second = farm.submit(slow_scene, "1", chunk_size=1)
        finished(farm, second)
        [task] = farm.get(f"/api/jobs/{second['id']}/tasks")
        assert task["runner_id"] == away_runner
    finally:
        proxy.close()
