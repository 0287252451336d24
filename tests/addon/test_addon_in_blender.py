"""The built add-on, installed by real Blender, submits a textured, linked scene to a real farm.

bpy 5.0.1 installs the extension zip (its own blender-asset-tracer and zstandard wheels,
not this virtualenv's), Debian's Blender 3.4 the legacy zip. In each, blender_driver.py
builds a shot whose texture and library live in other folders, submits it with the
add-on's operator, resubmits it unchanged, changes the texture and submits again, then
checks errors, the unsaved-changes path and the panels. A runner renders the first job
and the EXR must show the texture on the left and the linked library's object on the right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framefarm.submit import download_outputs, wait_for_job
from runner.blender import BlenderBackend, blender_env
from tests.e2e.conftest import LiveFarm
from tests.runner.test_render_backends import read_exr

pytestmark = [pytest.mark.e2e, pytest.mark.blender]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module")
def addon_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    output = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--output", str(output)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    extension, legacy = (Path(line) for line in done.stdout.split())
    return {"extension": extension, "legacy": legacy}


def green_png(path: Path) -> Path:
    Image.new("RGB", (8, 8), (0, 255, 0)).save(path)
    return path


def run_driver(farm: LiveFarm, tmp_path: Path, kind: str, zip_path: Path) -> dict[str, dict]:
    config = tmp_path / "driver.json"
    config.write_text(
        json.dumps(
            {
                "zip": str(zip_path),
                "kind": kind,
                "manager_url": farm.url,
                "api_key": farm.user_key,
                "project": str(tmp_path / "project"),
                "hide": sysconfig.get_paths()["purelib"],
                "green_png": str(green_png(tmp_path / "green.png")),
            }
        )
    )
    driver = str(HERE / "blender_driver.py")
    if kind == "extension":
        argv = [sys.executable, driver, str(config)]
    else:
        argv = ["blender", "-b", "--factory-startup", "--python-exit-code", "1", "-P", driver]
        argv += ["--", str(config)]
    work = tmp_path / "cwd"  # not the repository: its addon/ must not shadow the install
    work.mkdir()
    done = subprocess.run(
        argv,
        cwd=work,
        env=blender_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=480,  # generous: a busy 2-core machine
        stdin=subprocess.DEVNULL,
    )
    (tmp_path / "driver.log").write_text(done.stdout + "\n--- stderr\n" + done.stderr)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("@result "):
            step = json.loads(line.removeprefix("@result "))
            results[step["step"]] = step
    assert done.returncode == 0 and "done" in results, done.stdout[-5000:] + done.stderr[-5000:]
    return results


def check_submissions(results: dict[str, dict], tmp_path: Path) -> None:
    assert results["connection"]["outcome"] == ["FINISHED"], results["connection"]
    assert "simple-blender-render" in results["connection"]["message"]
    assert results["form"]["job_type"] == "simple-blender-render"
    assert {"frames", "deliverable"} <= set(results["form"]["keys"])

    first, again, changed = results["first"], results["again"], results["texture_changed"]
    assert first["outcome"] == ["FINISHED"], first
    assert first["manifest"] == ["library/props.blend", "shots/shot.blend", "textures/paint.png"]
    assert sorted(first["uploaded_files"]) == first["manifest"]
    assert first["warnings"] == []
    assert again["outcome"] == ["FINISHED"] and again["job_id"] > first["job_id"]
    assert again["uploaded_bytes"] == 0 and again["uploaded_files"] == []
    assert changed["uploaded_files"] == ["textures/paint.png"]
    assert changed["uploaded_bytes"] == (tmp_path / "green.png").stat().st_size

    # Blender 3.4 in background mode never marks the file changed, bpy 5.0 always does: the
    # two tests together cover packing the saved file and packing a fresh copy of it.
    dirty = results["dirty"]
    assert dirty["outcome"] == ["FINISHED"], dirty
    expected = ["shots/shot.blend"] if dirty["was_dirty"] else []
    assert dirty["uploaded_files"] == expected  # the textures and library are the same
    assert results["dirty_file"]["unchanged"] is True
    assert results["dirty_file"]["leftovers"] == []
    assert results["dirty_file"]["filepath"].endswith("shots/shot.blend")

    modal = results["modal"]
    # one step per tick: pack, hash, ask, upload (nothing), submit
    assert modal["outcome"] == ["FINISHED"] and modal["ticks"] >= 5, modal
    assert modal["reports"][-1][0] == "INFO" and "submitted" in modal["reports"][-1][1]
    esc = results["modal_esc"]
    assert esc["outcome"] == ["CANCELLED"] and esc["phase"] == "canceled", esc
    assert esc["reports"][-1][0] == "WARNING" and "Submit again" in esc["reports"][-1][1]
    assert esc["leftovers"] == []
    stale = results["stale_form"]
    assert stale["outcome"] == ["ERROR"] and "out of date" in stale["error"], stale
    assert "check the settings and submit again" in stale["error"]
    assert results["form_reloaded"]["etag"] not in ("", "0" * 16)

    listed = [job_id for job_id, _ in results["jobs"]["jobs"]]
    assert results["jobs"]["outcome"] == ["FINISHED"] and dirty["job_id"] in listed

    timer = results["timer"]
    assert timer["fetched"] >= 5 and timer["interval"] > 0 and timer["updated_after"] is False

    draw = results["draw"]
    assert draw["problems"] == [], draw
    assert any(line.startswith("Frames: 1-1") for line in draw["sidebar"]), draw["sidebar"]
    assert {"<framefarm.open_job_page>", "Job 7: shot"} <= set(draw["sidebar"])

    for step, words in (("bad_key", "API key"), ("unreachable", "cannot reach the manager")):
        outcome = results[step]
        assert outcome["outcome"] == ["ERROR"], outcome
        assert words in outcome["error"] and "Traceback" not in outcome["error"], outcome
    assert "cannot reach the manager" in results["test_unreachable"]["error"]
    internet = results.get("internet_host")  # Blender 3.4 has no online-access switch
    if internet is not None:
        assert internet["online_access"] is False  # background mode
        assert "Allow Online Access" in internet["error"], internet
    assert results["check_files"]["outcome"] == ["FINISHED"]
    (warning,) = results["check_files_warnings"]["warnings"]
    assert warning.startswith("image 'paint.png'") and warning.endswith("not found")
    missing = results["texture_missing"]
    assert missing["outcome"] == ["FINISHED"], missing
    assert any("paint.png" in warning for warning in missing["warnings"]), missing


def check_first_frame(farm: LiveFarm, job_id: int, dest: Path) -> None:
    with farm.client() as client:
        for job in client.get("/api/jobs").json()["jobs"]:  # only the first one is looked at
            if job["id"] != job_id and job["status"] in ("queued", "active"):
                client.post(f"/api/jobs/{job['id']}/cancel")
        status = wait_for_job(client, job_id, timeout=300, poll=0.2)
        assert status["status"] == "completed", farm.logs()
        (exr,) = download_outputs(client, job_id, dest)
    pixels = read_exr(exr)
    left = [float(pixels[c][32, 16]) for c in "RGB"]
    right = [float(pixels[c][32, 48]) for c in "RGB"]
    assert np.allclose(left, [1.0, 0.0, 0.0], atol=0.02), f"texture not shown: {left}"
    assert np.allclose(right, [0.0, 0.0, 1.0], atol=0.02), f"library object missing: {right}"


def test_extension_in_bpy_submits_a_textured_linked_scene(
    live_farm: LiveFarm,
    bpy_backend: BlenderBackend,
    addon_zips: dict[str, Path],
    tmp_path: Path,
):
    live_farm.start_runner(bpy_backend, "node-bpy")
    results = run_driver(live_farm, tmp_path, "extension", addon_zips["extension"])
    installed = results["installed"]
    hidden = os.path.realpath(sysconfig.get_paths()["purelib"])
    assert installed["package"] == "bl_ext.user_default.framefarm"
    assert "extensions" in installed["bat"] and not installed["bat"].startswith(hidden)
    assert "extensions" in installed["zstd"] and not installed["zstd"].startswith(hidden)
    check_submissions(results, tmp_path)
    check_first_frame(live_farm, results["first"]["job_id"], tmp_path / "frames")


def test_legacy_zip_in_blender34_submits_a_textured_linked_scene(
    live_farm: LiveFarm,
    blender_exe_backend: BlenderBackend,
    addon_zips: dict[str, Path],
    tmp_path: Path,
):
    live_farm.start_runner(blender_exe_backend, "node-34")
    results = run_driver(live_farm, tmp_path, "legacy", addon_zips["legacy"])
    assert results["installed"]["package"] == "framefarm"
    assert "/framefarm/vendor/blender_asset_tracer/" in results["installed"]["bat"]
    check_submissions(results, tmp_path)
    check_first_frame(live_farm, results["first"]["job_id"], tmp_path / "frames")
