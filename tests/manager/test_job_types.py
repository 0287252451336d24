"""Job types: schema checks, settings validation, compile errors, cycles, etags, user types."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from manager.job_types import AuthoredJob, JobTypeError, JobTypes
from manager.job_types.authoring import ordered_tasks
from manager.job_types.schema import parse_schema, validate_settings
from tests.manager.conftest import Farm
from tests.manager.test_jobs_api import assert_error, job_count, submit


def test_simple_render_chunks_are_named_by_their_frames(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1-3,7,9-10,20-21", chunk_size="2").json()
    tasks = farm.client.get(f"/api/jobs/{job['id']}/tasks", headers=farm.auth(farm.user_key))
    assert [t["name"] for t in tasks.json()] == [
        "render-1,2",
        "render-3,7",
        "render-9,10",
        "render-20,21",
    ]
    four = submit(farm, scene_bpy, frames="9,10,20,21", chunk_size="4").json()
    names = farm.client.get(f"/api/jobs/{four['id']}/tasks", headers=farm.auth(farm.user_key))
    assert [t["name"] for t in names.json()] == ["render-9,10,20,21"]


def test_video_deliverable_adds_an_encode_task_after_every_render(farm: Farm, scene_bpy: Path):
    settings = {"deliverable": "EXR_AV1_MP4", "fps": "29.97"}
    job = submit(farm, scene_bpy, frames="1-4", chunk_size="2", settings=json.dumps(settings))
    assert job.status_code == 202, job.text
    tasks = farm.client.get(
        f"/api/jobs/{job.json()['id']}/tasks", headers=farm.auth(farm.user_key)
    ).json()
    assert [t["name"] for t in tasks] == ["render-1,2", "render-3,4", "encode-video"]
    assert tasks[2]["type"] == "ffmpeg"
    assert sorted(tasks[2]["depends_on"]) == [tasks[0]["id"], tasks[1]["id"]]


def test_every_bad_setting_is_listed_and_nothing_is_created(farm: Farm, scene_bpy: Path):
    bad = {"deliverable": "GIF", "chunk_size": "two", "colour": "red", "fps": 24}
    response = submit(farm, scene_bpy, settings=json.dumps(bad))
    assert_error(response, 422, "invalid_settings")
    message = response.json()["message"]
    for expected in (
        "deliverable: 'GIF' is not one of",
        "chunk_size: must be a whole number",
        "colour: unknown setting",
        "fps: must be a string",
    ):
        assert expected in message
    assert job_count(farm) == 0


def test_unknown_job_type_and_bad_settings_json(farm: Farm, scene_bpy: Path):
    assert_error(submit(farm, scene_bpy, type="no-such-type"), 404, "job_type_not_found")
    assert_error(submit(farm, scene_bpy, settings="{not json"), 422, "invalid_settings")
    assert job_count(farm) == 0


def test_video_without_fps_is_a_compile_error(farm: Farm, scene_bpy: Path):
    response = submit(farm, scene_bpy, settings=json.dumps({"deliverable": "EXR_264_MP4"}))
    assert_error(response, 422, "compile_failed")
    assert "needs the fps setting" in response.json()["message"]
    assert job_count(farm) == 0


def test_job_types_are_listed_with_etags_and_a_stale_form_gets_412(farm: Farm, scene_bpy: Path):
    listing = farm.client.get("/api/job-types", headers=farm.auth(farm.user_key)).json()
    names = [t["name"] for t in listing["job_types"]]
    assert {"simple-blender-render", "echo-sleep-test"} <= set(names)
    one = farm.client.get("/api/job-types/simple-blender-render", headers=farm.auth(farm.user_key))
    etag = one.json()["etag"]
    assert one.headers["ETag"] == f'"{etag}"'
    deliverable = next(s for s in one.json()["settings"] if s["key"] == "deliverable")
    assert deliverable["choices"] == ["EXR", "EXR_264_MP4", "EXR_AV1_MP4", "EXR_VP9_WEBM"]
    assert submit(farm, scene_bpy, type_etag=etag).status_code == 202
    assert_error(submit(farm, scene_bpy, type_etag="0123456789abcdef"), 412, "stale_job_type")


def test_schema_and_settings_rules():
    schema = parse_schema(
        "t",
        {
            "settings": [
                {"key": "n", "type": "int32", "required": True},
                {"key": "ratio", "type": "float", "default": 0.5},
                {"key": "mode", "type": "string", "choices": ["a", "b"], "default": "a"},
                {"key": "on", "type": "bool"},
            ]
        },
    )
    assert validate_settings(schema, {"n": 3, "ratio": 1}) == (
        {"n": 3, "ratio": 1.0, "mode": "a"},
        [],
    )
    _, problems = validate_settings(schema, {"n": 2**31, "on": "yes"})
    assert problems == [
        "n: is outside the 32-bit range (got 2147483648)",
        "on: must be true or false (got 'yes')",
    ]
    assert validate_settings(schema, {})[1] == ["n: required"]
    with pytest.raises(JobTypeError, match="has type 'text'"):
        parse_schema("t", {"settings": [{"key": "x", "type": "text"}]})
    with pytest.raises(JobTypeError, match="appears twice"):
        parse_schema("t", {"settings": [{"key": "x", "type": "bool"}] * 2})


def test_dependency_cycles_are_refused():
    job = AuthoredJob(name="j", settings={})
    a, b, c = (job.add_task(n, "misc") for n in "abc")
    a.depends_on(c)
    b.depends_on(a)
    c.depends_on(b)
    with pytest.raises(JobTypeError, match="dependency cycle: a -> c -> b -> a"):
        ordered_tasks(job)
    with pytest.raises(JobTypeError, match="unknown task type"):
        job.add_task("d", "gpu-magic")


def readme_job_type_example() -> str:
    """The example module of the README's "Writing a job type", so the docs run as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Writing a job type", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: 'Writing a job type' lost its python example"
    return match.group(1)


USER_TYPE = readme_job_type_example()


def test_user_folder_adds_and_overrides_types_without_restart(tmp_path: Path):
    folder = tmp_path / "types"
    folder.mkdir()
    types = JobTypes(folder)
    assert types.get("render-and-report") is None
    (folder / "render_and_report.py").write_text(USER_TYPE)
    added = types.get("render-and-report")
    assert added is not None and added.schema.label == "Render and report"
    (folder / "echo_sleep_test.py").write_text(
        'JOB_TYPE = {"label": "Studio echo"}\n\ndef compile_job(job):\n    pass\n'
    )
    overridden = types.get("echo-sleep-test")
    assert overridden is not None and overridden.schema.label == "Studio echo"
    (folder / "broken.py").write_text("JOB_TYPE = {}\n")
    assert types.get("broken") is None
    assert any("compile_job" in reason for reason in types.broken.values())


def blob_query(sha: str, data: bytes) -> dict[str, list[dict[str, str | int]]]:
    return {"blobs": [{"sha256": sha, "size": len(data)}]}


def test_blobs_then_manifest(farm: Farm, scene_bpy: Path):
    data = scene_bpy.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    headers = farm.auth(farm.user_key)
    missing = farm.client.post("/api/blobs/missing", headers=headers, json=blob_query(sha, data))
    assert missing.json() == {"missing": [{"sha256": sha, "size": len(data)}]}
    manifest = {
        "type": "simple-blender-render",
        "settings": {"frames": "1-2"},
        "blend_file": "shots/a.blend",
        "files": {"shots/a.blend": {"sha256": sha, "size": len(data)}},
    }
    early = farm.client.post("/api/jobs/manifest", headers=headers, json=manifest)
    assert_error(early, 409, "files_missing")
    wrong = farm.client.put(f"/api/blobs/{'0' * 64}", headers=headers, content=data)
    assert_error(wrong, 422, "checksum_mismatch")
    assert farm.client.put(f"/api/blobs/{sha}", headers=headers, content=data).status_code == 201
    again = farm.client.post("/api/blobs/missing", headers=headers, json=blob_query(sha, data))
    assert again.json() == {"missing": []}
    created = farm.client.post("/api/jobs/manifest", headers=headers, json=manifest)
    assert created.status_code == 202, created.text
    assert created.json()["blend_file"] == "shots/a.blend"
    escape = {**manifest, "files": {"../a.blend": manifest["files"]["shots/a.blend"]}}
    assert_error(
        farm.client.post("/api/jobs/manifest", headers=headers, json=escape), 422, "invalid_path"
    )
