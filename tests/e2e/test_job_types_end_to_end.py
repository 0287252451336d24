"""Job types on a real farm: a studio's own type, and a 24-frame HDR video encode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from framefarm.submit import download_outputs, submit_blend, wait_for_job
from runner.blender import BlenderBackend
from tests.e2e.conftest import LiveFarm
from tests.manager.test_job_types import USER_TYPE

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def test_a_user_job_type_runs_its_own_step_after_the_renders(
    live_farm: LiveFarm, bpy_backend: BlenderBackend, scene_bpy: Path
):
    (live_farm.job_types_dir / "render_and_report.py").write_text(USER_TYPE)  # no restart
    live_farm.start_runner(bpy_backend, "node-1")
    with live_farm.client() as client:
        job = submit_blend(
            client,
            scene_bpy,
            frames="1-2",
            job_type="render-and-report",
            settings={"note": "denoise pass done"},
        )
        status = wait_for_job(client, job["id"], timeout=180, poll=0.2)
        tasks = client.get(f"/api/jobs/{job['id']}/tasks").json()
    assert status["status"] == "completed", live_farm.logs()
    assert [t["name"] for t in tasks] == ["render-1", "render-2", "report"]
    report = tasks[2]
    assert sorted(report["depends_on"]) == [tasks[0]["id"], tasks[1]["id"]]
    assert report["started_at"] >= max(t["finished_at"] for t in tasks[:2])
    log = live_farm.root / "storage" / "jobs" / str(job["id"]) / "logs" / f"task-{report['id']}.log"
    text = log.read_text()
    assert "denoise pass done" in text
    assert "studio step ran" in text


def ffprobe(path: Path) -> list[dict]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    streams: list[dict] = json.loads(done.stdout)["streams"]
    return streams


@pytest.mark.ffmpeg
def test_a_24_frame_job_encodes_an_hdr_video_with_its_alpha(
    live_farm: LiveFarm, bpy_backend: BlenderBackend, make_scene, tmp_path: Path
):
    scene = make_scene(
        bpy_backend,
        tmp_path / "shot.blend",
        frame_start=1,
        frame_end=24,
        size=48,
        samples=2,
        transparent=True,
    )
    live_farm.start_runner(bpy_backend, "node-1")
    with live_farm.client() as client:
        job = submit_blend(
            client,
            scene,
            frames="1-24",
            chunk_size=12,
            name="shot 010",
            settings={"deliverable": "EXR_VP9_WEBM", "fps": "24"},
        )
        status = wait_for_job(client, job["id"], timeout=300, poll=0.5)
        outputs = download_outputs(client, job["id"], tmp_path / "out")
    assert status["status"] == "completed", live_farm.logs()
    names = sorted(p.name for p in outputs)
    assert names[:24] == [f"frame_{f:06d}.exr" for f in range(1, 25)]
    assert "shot_010.webm" in names and "shot_010.preview.mp4" in names
    colour, matte = ffprobe(tmp_path / "out" / "shot_010.webm")
    assert colour["codec_name"] == "vp9"
    assert colour["pix_fmt"] == "yuv420p10le"
    assert colour["color_transfer"] == "arib-std-b67"
    assert colour["color_primaries"] == "bt2020"
    assert colour["color_space"] == "bt2020nc"
    assert colour["r_frame_rate"] == "24/1"
    assert matte["codec_type"] == "video"
    assert "alpha" in json.dumps(matte.get("tags", {})).lower()
    (preview,) = ffprobe(tmp_path / "out" / "shot_010.preview.mp4")
    assert preview["codec_name"] == "h264" and preview["pix_fmt"] == "yuv420p"
