"""The built add-on, installed by real Blender, submits a textured, linked scene to a real farm.

bpy 5.0.1 installs the extension zip (its own blender-asset-tracer and zstandard wheels,
not this virtualenv's), Debian's Blender 3.4 the legacy zip (with its own copies of both
in its vendor/ folder). In each, blender_driver.py builds a shot whose texture and library
live in other folders, submits it with the add-on's operator, resubmits it unchanged,
changes the texture and submits again, then checks errors, the unsaved-changes path and the
panels; it keeps the API key in its credentials file and moves one from old preferences
there. Last it submits a second shot, saved compressed, whose texture and Mesh Cache file
sit in other folders under absolute paths. Then the artist's files are deleted and a runner
renders the first job and the compressed one from the farm's copies: the EXRs must show
each texture on the left and the library's object, or the cached one, on the right.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import numpy as np
import pytest
from blender_asset_tracer import trace
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
                "cached_project": str(tmp_path / "cached"),
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
    assert farm.user_key not in done.stdout + done.stderr, "the add-on printed the API key"
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


def check_credentials(results: dict[str, dict]) -> None:
    """The key lives in a 0600 file in Blender's config folder, never in userpref.blend."""
    credentials = results["credentials"]
    assert credentials["path"].endswith("/config/framefarm/credentials.json"), credentials
    assert credentials["exists"] and credentials["mode"] == "0o600", credentials
    assert credentials["holds_key"] and credentials["shown"], credentials
    assert credentials["userpref"] == {"key_saved": False, "url_saved": True}, credentials

    forget = results["forget"]
    assert forget["outcome"] == ["FINISHED"] and not forget["exists"], forget
    assert "no API key yet" in results["no_key"]["error"], results["no_key"]
    migrated = results["migrated"]
    assert migrated["old_version_saved_key"] is True, migrated  # what the move is for
    assert migrated["exists"] and migrated["mode"] == "0o600" and migrated["holds_key"], migrated
    assert migrated["old_key_cleared"] and migrated["prefs_dirty"], migrated
    assert migrated["after"] == {"key_saved": False, "url_saved": True}, migrated


def stored_job_files(farm: LiveFarm, job_id: int) -> dict[str, Path]:
    """The job's manifest as the manager stored it: relative path → the blob's file."""
    uri = f"file:{farm.root / 'framefarm.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT path, sha256 FROM job_files WHERE job_id = ?", (job_id,))
        return {path: farm.root / "storage" / "blobs" / sha[:2] / sha for path, sha in rows}


def check_cached_job(farm: LiveFarm, results: dict[str, dict], tmp_path: Path) -> None:
    """The compressed shot's texture and cache reached the manager, under relative paths."""
    assert results["cached_built"]["magic"] == "28b52ffd", results["cached_built"]  # zstd
    cached = results["cached"]
    assert cached["outcome"] == ["FINISHED"], cached
    files = ["caches/prop.pc2", "shots/shot.blend", "textures/paint.png"]
    assert cached["manifest"] == files and cached["warnings"] == [], cached
    stored = stored_job_files(farm, cached["job_id"])
    assert sorted(stored) == files
    cache = tmp_path / "cached" / "caches" / "prop.pc2"
    assert stored["caches/prop.pc2"].read_bytes() == cache.read_bytes()
    shot = tmp_path / "stored-shot.blend"
    shutil.copyfile(stored["shots/shot.blend"], shot)
    paths = {usage.asset_path.decode() for usage in trace.deps(shot)}
    assert paths == {"//../textures/paint.png", "//../caches/prop.pc2"}


def render_from_the_farm_alone(
    farm: LiveFarm, backend: BlenderBackend, name: str, results: dict[str, dict], tmp_path: Path
) -> None:
    """Delete the artist's projects, start a runner, and render the first and cached jobs."""
    shutil.rmtree(tmp_path / "project")
    shutil.rmtree(tmp_path / "cached")
    farm.start_runner(backend, name)
    expected = {
        results["first"]["job_id"]: [1.0, 0.0, 0.0],
        results["cached"]["job_id"]: [0.0, 1.0, 0.0],
    }
    check_frames(farm, expected, tmp_path / "frames")


def check_frames(farm: LiveFarm, left_colours: dict[int, list[float]], dest: Path) -> None:
    """Each job's frame: its texture's colour on the left, blue on the right."""
    with farm.client() as client:
        for job in client.get("/api/jobs").json()["jobs"]:  # only these are looked at
            if job["id"] not in left_colours and job["status"] in ("queued", "active"):
                client.post(f"/api/jobs/{job['id']}/cancel")
        for job_id, colour in left_colours.items():
            status = wait_for_job(client, job_id, timeout=300, poll=0.2)
            assert status["status"] == "completed", farm.logs()
            (exr,) = download_outputs(client, job_id, dest / str(job_id))
            pixels = read_exr(exr)
            left = [float(pixels[c][32, 16]) for c in "RGB"]
            right = [float(pixels[c][32, 48]) for c in "RGB"]
            assert np.allclose(left, colour, atol=0.02), f"job {job_id}: texture not shown: {left}"
            assert np.allclose(right, [0.0, 0.0, 1.0], atol=0.02), f"job {job_id}: {right}"


def test_extension_in_bpy_submits_a_textured_linked_scene(
    live_farm: LiveFarm,
    bpy_backend: BlenderBackend,
    addon_zips: dict[str, Path],
    tmp_path: Path,
):
    results = run_driver(live_farm, tmp_path, "extension", addon_zips["extension"])
    installed = results["installed"]
    hidden = os.path.realpath(sysconfig.get_paths()["purelib"])
    assert installed["package"] == "bl_ext.user_default.framefarm"
    assert "extensions" in installed["bat"] and not installed["bat"].startswith(hidden)
    assert "extensions" in installed["zstd"] and not installed["zstd"].startswith(hidden)
    check_submissions(results, tmp_path)
    check_credentials(results)
    check_cached_job(live_farm, results, tmp_path)
    render_from_the_farm_alone(live_farm, bpy_backend, "node-bpy", results, tmp_path)


def test_legacy_zip_in_blender34_submits_a_textured_linked_scene(
    live_farm: LiveFarm,
    blender_exe_backend: BlenderBackend,
    addon_zips: dict[str, Path],
    tmp_path: Path,
):
    results = run_driver(live_farm, tmp_path, "legacy", addon_zips["legacy"])
    installed = results["installed"]
    assert installed["package"] == "framefarm"
    assert "/framefarm/vendor/blender_asset_tracer/" in installed["bat"]
    assert "/framefarm/vendor/zstandard/" in installed["zstd"]  # reads the compressed shot
    migrated = results["migrated"]  # the add-on was disabled and enabled again there
    assert migrated["vendor"] and migrated["vendor_on_path"], migrated
    assert migrated["vendor_on_path_disabled"] is False, migrated
    check_submissions(results, tmp_path)
    check_credentials(results)
    check_cached_job(live_farm, results, tmp_path)
    render_from_the_farm_alone(live_farm, blender_exe_backend, "node-34", results, tmp_path)


def run_blender34(home: Path, script: str, *options: str) -> str:
    done = subprocess.run(
        ["blender", "-b", *options, "--python-exit-code", "1", "--python-expr", script],
        env=blender_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_key_in_old_preferences_moves_to_the_key_file_when_blender_starts(
    addon_zips: dict[str, Path], tmp_path: Path
):
    key = "ff_" + uuid.uuid4().hex
    home = tmp_path / "home"
    config = home / "blender" / "config"
    # As add-on 0.2 left it: enabled, the key saved in its `api_key` preference.
    run_blender34(
        home,
        "import addon_utils, bpy\n"
        f"bpy.ops.preferences.addon_install(filepath={str(addon_zips['legacy'])!r})\n"
        "addon_utils.enable('framefarm', default_set=True, handle_error=None)\n"
        f"bpy.context.preferences.addons['framefarm'].preferences.api_key = {key!r}\n"
        "bpy.ops.wm.save_userpref()\n",
        "--factory-startup",
    )
    assert key.encode() in (config / "userpref.blend").read_bytes()
    assert not (config / "framefarm" / "credentials.json").exists()

    # Blender starts with those preferences and the add-on on; quitting saves them.
    output = run_blender34(
        home,
        "import bpy\n"
        "prefs = bpy.context.preferences\n"
        "assert prefs.is_dirty, 'the preferences would not be saved again'\n"
        "assert not prefs.addons['framefarm'].preferences.is_property_set('api_key')\n"
        "bpy.ops.wm.save_userpref()\n",
    )
    credentials = config / "framefarm" / "credentials.json"
    assert json.loads(credentials.read_text()) == {"api_key": key}
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert key.encode() not in (config / "userpref.blend").read_bytes()
    assert key not in output
