"""The whole farm for real: uvicorn manager, runner process, Blender, EXRs over the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framefarm.submit import download_outputs, submit_blend, wait_for_job
from runner.blender import BlenderBackend
from tests.e2e.conftest import LiveFarm
from tests.runner.test_render_backends import FRAMES, read_exr, render_reference

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def render_on_farm(
    farm: LiveFarm, backend: BlenderBackend, blend: Path, dest: Path, **options: object
) -> tuple[dict, list[Path]]:
    farm.start_runner(backend, "node-1")
    with farm.client() as client:
        job = submit_blend(
            client, blend, frames=f"{FRAMES[0]}-{FRAMES[-1]}", chunk_size=2, **options
        )  # type: ignore[arg-type]
        status = wait_for_job(client, job["id"], timeout=180, poll=0.2)
        outputs = download_outputs(client, job["id"], dest) if status["succeeded"] else []
    return status, outputs


@pytest.mark.parametrize("backend_name", ["bpy", "executable"])
def test_farm_renders_exrs_identical_to_blender(
    live_farm: LiveFarm, request: pytest.FixtureRequest, tmp_path: Path, backend_name: str
):
    if backend_name == "bpy":
        backend, scene = (
            request.getfixturevalue("bpy_backend"),
            request.getfixturevalue("scene_bpy"),
        )
    else:
        backend = request.getfixturevalue("blender_exe_backend")
        scene = request.getfixturevalue("scene_blender34")
    status, outputs = render_on_farm(live_farm, backend, scene, tmp_path / "downloaded")
    assert status["status"] == "completed", live_farm.logs()
    assert status["frames_done"] == len(FRAMES)
    assert [p.name for p in outputs] == [f"frame_{f:06d}.exr" for f in FRAMES]

    reference = tmp_path / "reference"
    render_reference(backend, scene, reference, tmp_path / "home")
    for frame, path in zip(FRAMES, outputs, strict=True):
        pixels = read_exr(path)
        assert sorted(pixels) == ["A", "B", "G", "R"]
        for channel in pixels.values():
            assert channel.shape == (64, 64)
            assert channel.dtype == np.float16
        assert float(np.abs(pixels["R"]).max()) > 0.0, "the frame is black"
        assert float(pixels["A"].min()) < float(pixels["A"].max()) or pixels["A"].max() > 0
        expected = read_exr(reference / path.name)
        for name, channel in expected.items():
            assert np.array_equal(pixels[name], channel), f"frame {frame} channel {name} differs"


def test_a_failing_render_fails_the_job_with_blenders_reason(
    live_farm: LiveFarm, bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path
):
    status, outputs = render_on_farm(
        live_farm, bpy_backend, scene_bpy, tmp_path, scene="NoSuchScene"
    )
    assert status["status"] == "failed"
    assert status["succeeded"] is False
    assert "NoSuchScene" in status["failure_reason"]
    assert outputs == []


def test_submit_command_waits_and_downloads(
    live_farm: LiveFarm, bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path
):
    live_farm.start_runner(bpy_backend, "node-cli")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "framefarm",
            "submit",
            str(scene_bpy),
            "--frames",
            "2-3",
            "--manager",
            live_farm.url,
            "--api-key",
            live_farm.user_key,
            "--wait",
            "--download",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=live_farm.env,
    )
    assert done.returncode == 0, done.stderr + live_farm.logs()
    assert "job 1 queued" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "frame_000002.exr",
        "frame_000003.exr",
    ]


def test_submit_command_reports_a_bad_key(live_farm: LiveFarm, scene_bpy: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "framefarm",
            "submit",
            str(scene_bpy),
            "--frames",
            "1",
            "--manager",
            live_farm.url,
            "--api-key",
            "ff_wrong",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=live_farm.env,
    )
    assert done.returncode == 1
    assert "unknown or revoked" in done.stderr
