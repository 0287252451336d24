"""Persistent render sessions in real Blender: same pixels as a fresh process, restarts when
frames slow down or memory passes its limit, never reused across jobs or files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
import pytest

from runner.blender import (
    BlenderBackend,
    RenderEvent,
    RenderFailed,
    RenderResult,
    blender_env,
    check_render,
)
from runner.devices import DeviceChoice
from runner.renderer import ProcessRenderer, Renderer, RenderRequest
from runner.session import SessionPolicy, SessionPool, SessionRenderer
from tests.conftest import MakeScene
from tests.runner.farm import RunnerFarm, wait_for

pytestmark = pytest.mark.blender

# Cycles' samples are animatable: frames 1-3 take one sample, frames 4-5 many, so the
# session really slows down, in real Blender, from frame 4 (whole frames sit on the keys).
ANIMATE_SAMPLES = """
import bpy, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False)
scene = bpy.context.scene
for frame, samples in ((1, 1), (3, 1), (4, {slow}), (5, {slow})):
    scene.cycles.samples = samples
    scene.keyframe_insert('cycles.samples', frame=frame)
bpy.ops.wm.save_mainfile()
"""
SLOW_SAMPLES = 48


def request_for(scene: Path, output_dir: Path, frames: list[int], home: Path) -> RenderRequest:
    return RenderRequest(
        blend_file=scene,
        output_dir=output_dir,
        frames=frames,
        scene=None,
        device=DeviceChoice(),
        threads=1,
        files_dir=scene.parent,
        blender_home=home,
    )


def render(
    renderer: Renderer,
    request: RenderRequest,
    events: list[RenderEvent] | None = None,
    stop: threading.Event | None = None,
) -> RenderResult:
    sink = events if events is not None else []
    return renderer.render(
        request,
        on_event=sink.append,
        on_output_line=lambda _line: None,
        stop=stop or threading.Event(),
    )


def pixels(path: Path) -> dict[str, np.ndarray]:
    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    return {name: np.asarray(channel.pixels) for name, channel in channels.items()}


@pytest.mark.parametrize("kind", ["bpy", "executable"])
def test_a_session_renders_the_same_pixels_as_a_fresh_process(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, blender_home: Path
) -> None:
    backend: BlenderBackend = request.getfixturevalue(
        "bpy_backend" if kind == "bpy" else "blender_exe_backend"
    )
    scene: Path = request.getfixturevalue("scene_bpy" if kind == "bpy" else "scene_blender34")
    session = SessionRenderer(backend, job_id=1)
    events: list[RenderEvent] = []
    # Two tasks of one job, out of order: frames 3, 1 then 4, 2, all in one process.
    first = render(session, request_for(scene, tmp_path / "t1", [3, 1], blender_home), events)
    second = render(session, request_for(scene, tmp_path / "t2", [4, 2], blender_home), events)
    try:
        check_render(first, [3, 1])
        check_render(second, [4, 2])
        assert session.started == 1 and session.warm
        pid = session.session.pid if session.session else None
    finally:
        session.close()
    assert pid is not None and not session.warm
    names = [e.name for e in events]
    assert names.count("ready") == 2 and names.count("done") == 2
    assert names.count("frame_finished") == 4 and "session_ready" not in names

    fresh = render(
        ProcessRenderer(backend), request_for(scene, tmp_path / "fresh", [1, 2, 3, 4], blender_home)
    )
    check_render(fresh, [1, 2, 3, 4])
    kept = {**first.saved, **second.saved}
    for frame in (1, 2, 3, 4):
        ours, theirs = pixels(kept[frame]), pixels(fresh.saved[frame])
        assert sorted(ours) == sorted(theirs) == ["A", "B", "G", "R"]
        for name in ours:
            assert np.array_equal(ours[name], theirs[name]), (frame, name)
    # Frames differ from each other, so the comparison could have failed.
    assert not np.array_equal(pixels(kept[1])["R"], pixels(kept[4])["R"])


@pytest.fixture(scope="module")
def slowing_scene(
    make_scene: MakeScene, bpy_backend: BlenderBackend, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("slowing-scene")
    scene = make_scene(bpy_backend, folder / "slowing.blend", frame_end=5, size=64, samples=1)
    done = subprocess.run(
        [bpy_backend.path, "-c", ANIMATE_SAMPLES.format(slow=SLOW_SAMPLES), str(scene)],
        env=blender_env(folder / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return scene


def test_a_session_restarts_when_its_frame_time_grows(
    bpy_backend: BlenderBackend, slowing_scene: Path, tmp_path: Path, blender_home: Path
) -> None:
    policy = SessionPolicy(baseline_frames=2, slowdown=2.0, min_slowdown_s=0.1, memory_growth=None)
    session = SessionRenderer(bpy_backend, job_id=1, policy=policy)
    frame_pids: dict[int, int] = {}
    events: list[RenderEvent] = []

    def note_pid(event: RenderEvent) -> None:
        events.append(event)
        if event.name == "frame_started" and session.session is not None and event.frame:
            frame_pids[event.frame] = session.session.pid

    try:
        result = session.render(
            request_for(slowing_scene, tmp_path / "out", [1, 2, 3, 4, 5], blender_home),
            on_event=note_pid,
            on_output_line=lambda _line: None,
            stop=threading.Event(),
        )
        check_render(result, [1, 2, 3, 4, 5])
    finally:
        session.close()
    seconds = {e.frame: float(e.data["seconds"]) for e in events if e.name == "frame_finished"}
    # Blender's own clock agrees that frame 4 is the slow one.
    assert seconds[4] > 2 * max(seconds[1], seconds[2]), seconds
    assert len(session.restarts) == 1 and session.restarts[0].startswith("frame 4 took")
    assert session.started == 2
    assert frame_pids[1] == frame_pids[2] == frame_pids[3] == frame_pids[4] != frame_pids[5]


def test_a_session_restarts_when_its_memory_passes_the_limit(
    bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path, blender_home: Path
) -> None:
    policy = SessionPolicy(memory_limit_bytes=64 << 20, memory_growth=None)
    session = SessionRenderer(bpy_backend, job_id=1, policy=policy)
    result = render(session, request_for(scene_bpy, tmp_path / "out", [1, 2], blender_home))
    check_render(result, [1, 2])
    # bpy holds far more than 64 MiB, so every frame ends its process.
    assert session.started == 2 and not session.warm
    assert all("passed the limit of 64 MiB" in reason for reason in session.restarts)
    assert len(session.restarts) == 2


def test_sessions_never_cross_jobs_or_files(
    bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path, blender_home: Path
) -> None:
    pool = SessionPool(SessionPolicy(idle_s=0.5))
    try:
        job1 = pool.renderer(bpy_backend, 1)
        check_render(render(job1, request_for(scene_bpy, tmp_path / "a", [1], blender_home)), [1])
        assert pool.warm_job_id == 1 and pool.renderer(bpy_backend, 1) is job1
        assert job1.session is not None
        first_process = job1.session.process

        job2 = pool.renderer(bpy_backend, 2)
        assert job2 is not job1 and not job1.warm and first_process.poll() is not None
        assert pool.warm_job_id is None

        copy = tmp_path / "copy" / "scene.blend"
        copy.parent.mkdir()
        copy.write_bytes(scene_bpy.read_bytes())
        check_render(render(job2, request_for(scene_bpy, tmp_path / "b", [2], blender_home)), [2])
        check_render(render(job2, request_for(copy, tmp_path / "c", [2], blender_home)), [2])
        assert job2.started == 2  # another file, even with the same bytes: a new process

        pool.task_ended()
        deadline = time.monotonic() + 10
        while pool.warm_job_id is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.warm_job_id is None and not job2.warm  # closed after idle_s
    finally:
        pool.close()


def allowed_cpus(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return re.search(r"^Cpus_allowed_list:\s*(\S+)$", status, re.M).group(1)  # type: ignore[union-attr]


def test_a_slots_cpu_share_pins_its_blender_session_and_fresh_processes(
    bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path, blender_home: Path
) -> None:
    cpu = min(os.sched_getaffinity(0))
    request = replace(
        request_for(scene_bpy, tmp_path / "a", [1], blender_home), device=DeviceChoice(cpus=(cpu,))
    )
    session = SessionRenderer(bpy_backend, job_id=1)
    try:
        check_render(render(session, request), [1])
        assert session.session is not None
        assert allowed_cpus(session.session.pid) == str(cpu)  # every thread it starts, too
        threads = Path(f"/proc/{session.session.pid}/task").iterdir()
        assert {allowed_cpus(int(t.name)) for t in threads} == {str(cpu)}
    finally:
        session.close()
    # A fresh process per task too: render.py reports its own pid in no event, so the
    # pinning is read from the command the renderer starts.
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", recording_popen)
        result = render(ProcessRenderer(bpy_backend), replace(request, output_dir=tmp_path / "b"))
    check_render(result, [1])
    assert seen and seen[0][:3] == ["taskset", "--cpu-list", str(cpu)]


def test_a_failed_or_stopped_session_ends_its_process(
    bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path, blender_home: Path
) -> None:
    session = SessionRenderer(bpy_backend, job_id=1)
    missing = request_for(tmp_path / "gone.blend", tmp_path / "out", [1], blender_home)
    failed = render(session, missing)
    with pytest.raises(RenderFailed, match="blend file not found"):
        check_render(failed, [1])
    assert not session.warm

    stop = threading.Event()
    events: list[RenderEvent] = []

    def stop_on_first_frame(event: RenderEvent) -> None:
        events.append(event)
        if event.name == "frame_started":
            stop.set()

    result = session.render(
        request_for(scene_bpy, tmp_path / "out", [1, 2, 3], blender_home),
        on_event=stop_on_first_frame,
        on_output_line=lambda _line: None,
        stop=stop,
    )
    assert result.stopped and not session.warm and session.session is None
    assert "done" not in [e.name for e in events]


@pytest.mark.e2e
def test_a_runner_renders_a_job_in_one_session_unless_the_job_turns_sessions_off(
    farm: RunnerFarm, scene_bpy: Path
) -> None:
    farm.start_runner("node-1", "--blender", sys.executable, "--no-tui")
    kept = farm.submit(scene_bpy, "1-3", chunk_size=1)
    fresh = farm.submit(scene_bpy, "1-2", chunk_size=1, settings={"sessions": False})

    def finished(job_id: int) -> dict[str, Any] | None:
        status: dict[str, Any] = farm.get(f"/api/jobs/{job_id}")
        return status if status["status"] in ("completed", "failed", "canceled") else None

    for job in (kept, fresh):
        status = wait_for(lambda j=job: finished(j["id"]), 180, "the job to finish", farm)
        assert status["status"] == "completed", farm.logs()
    log = (farm.root / "runner-node-1.log").read_text()
    # Three tasks of the first job, one Blender; none for the job that turned sessions off.
    assert len(re.findall(rf"Blender session \d+ of job {kept['id']} started", log)) == 1, log
    assert f"of job {fresh['id']} started" not in log
    assert len(farm.get(f"/api/jobs/{fresh['id']}/outputs")["outputs"]) == 2
    assert len(farm.get(f"/api/jobs/{kept['id']}/outputs")["outputs"]) == 3
