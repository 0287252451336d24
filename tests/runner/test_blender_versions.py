"""Each job renders on the Blender its scene was saved with: the runner's own bpy 5.0.1, or
Debian's Blender 3.4.1 downloaded from the manager as a stored build; a version nobody has
fails the job saying so.

The stored "build" is a real archive of a real Blender as far as this machine allows: a
folder with a launcher script that runs Debian's /usr/bin/blender (an official Blender
tarball would work the same way, but cannot be downloaded here).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from manager.blender_versions import BlenderVersions
from manager.db import make_engine
from manager.models import Runner
from manager.settings import database_url
from tests.runner.farm import RunnerFarm, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def stored_blender_34(farm: RunnerFarm, root: Path) -> str:
    folder = root / "blender-3.4-build"
    folder.mkdir()
    launcher = folder / "blender"
    launcher.write_text('#!/bin/sh\nexec /usr/bin/blender "$@"\n')
    launcher.chmod(0o755)
    return BlenderVersions(farm.storage).add(folder, version="3.4.1").sha256


def saved_by_blender_42(scene_34: Path, root: Path) -> Path:
    """The 3.4 scene with its header saying 4.2: a version no runner here can get."""
    data = scene_34.read_bytes()
    assert data.startswith(b"BLENDER-v304"), data[:12]
    path = root / "from-4.2.blend"
    path.write_bytes(b"BLENDER-v402" + data[12:])
    return path


def finished(farm: RunnerFarm, job_id: int) -> dict | None:
    status = farm.get(f"/api/jobs/{job_id}")
    return status if status["status"] in ("completed", "failed", "canceled") else None


def test_each_job_renders_on_the_blender_its_scene_was_saved_with(
    farm: RunnerFarm, scene_bpy: Path, scene_blender34: Path, tmp_path: Path
) -> None:
    sha = stored_blender_34(farm, tmp_path)
    # Only bpy 5.0.1 is local; two slots, so both jobs can run at once.
    farm.start_runner("node-1", "--blender", sys.executable, "--slots", "2")
    new = farm.submit(scene_bpy, "1-2", chunk_size=2, name="saved-by-5.0")
    old = farm.submit(scene_blender34, "1-2", chunk_size=2, name="saved-by-3.4")
    assert (new["blender_version"], old["blender_version"]) == ("5.0", "3.4")

    for job in (new, old):
        status = wait_for(lambda job=job: finished(farm, job["id"]), 180, "jobs to finish", farm)
        assert status["status"] == "completed", farm.logs()
        assert status["frames_done"] == 2

    log = (farm.root / "runner-node-1.log").read_text()
    rendered_by = dict(re.findall(r"task (\d+): Blender (\S+) renders on CPU", log))
    task_of = {job["id"]: farm.get(f"/api/jobs/{job['id']}/tasks")[0]["id"] for job in (new, old)}
    assert rendered_by[str(task_of[new["id"]])] == "5.0.1"
    assert rendered_by[str(task_of[old["id"]])] == "3.4.1"
    assert log.count("downloading Blender 3.4.1") == 1
    # Two slots: the second task started before the first one ended.
    lines = log.splitlines()
    started = [
        i for i, line in enumerate(lines) if re.search(r"task \d+ \(render-1,2\) of job", line)
    ]
    first_done = next(i for i, line in enumerate(lines) if re.search(r"task \d+ completed", line))
    assert len(started) == 2 and max(started) < first_done, log
    unpacked = farm.root / "runner-node-1" / "blender-versions" / sha[:16] / "blender"
    assert unpacked.is_file()

    # The runner told the manager which versions it has or can download, and its devices.
    engine = make_engine(database_url(str(farm.db)))
    with Session(engine) as session:
        [runner] = session.exec(select(Runner)).all()
        assert runner.blender["versions"] == ["3.4", "5.0"]
        assert [d["type"] for d in runner.blender["devices"]] == ["CPU"]
    engine.dispose()

    # A scene from a version neither the runner nor the manager has: the job says so.
    orphan = farm.submit(saved_by_blender_42(scene_blender34, tmp_path), "1", name="saved-by-4.2")
    status = wait_for(lambda: finished(farm, orphan["id"]), 120, "the 4.2 job to fail", farm)
    assert status["status"] == "failed"
    assert "the scene was saved with Blender 4.2; this runner has bpy 5.0.1" in (
        status["failure_reason"] or ""
    )
    assert "the manager stores no 4.2 build" in status["failure_reason"]
