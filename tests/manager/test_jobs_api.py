"""Jobs API against a real app and a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.manager.conftest import Farm


def submit(farm: Farm, blend: Path, frames: str = "1-4", key: str | None = None, **form: str):
    with open(blend, "rb") as f:
        return farm.client.post(
            "/api/jobs",
            headers=farm.auth(key or farm.user_key),
            data={"frames": frames, **form},
            files={"file": (blend.name, f, "application/octet-stream")},
        )


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    assert body["message"]


def job_count(farm: Farm) -> int:
    return farm.client.get("/api/jobs", headers=farm.auth(farm.admin_key)).json()["count"]


def test_submit_answers_202_with_location_and_compiles_chunks(farm: Farm, scene_bpy: Path):
    response = submit(farm, scene_bpy, frames="1-7", chunk_size="3", priority="70")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert int(response.headers["Retry-After"]) > 0
    assert job["status"] == "queued"
    assert job["frame_count"] == 7
    assert job["priority"] == 70
    assert job["blender_version"] == "5.0"
    assert job["tasks"]["total"] == 3

    tasks = farm.client.get(f"/api/jobs/{job['id']}/tasks", headers=farm.auth(farm.user_key))
    assert [t["name"] for t in tasks.json()] == ["render-1-3", "render-4-6", "render-7"]
    assert [t["frames"] for t in tasks.json()] == [[1, 2, 3], [4, 5, 6], [7]]

    fetched = farm.client.get(response.headers["Location"], headers=farm.auth(farm.user_key))
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]


def test_status_is_202_until_finished(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy).json()
    status = farm.client.get(f"/api/jobs/{job['id']}/status", headers=farm.auth(farm.user_key))
    assert status.status_code == 202
    assert status.headers["Location"] == f"/api/jobs/{job['id']}/status"
    assert int(status.headers["Retry-After"]) > 0
    assert status.json()["finished"] is False


def test_cancel_makes_status_200_but_not_succeeded(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy).json()
    canceled = farm.client.delete(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key))
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["tasks"]["canceled"] == 4  # frames-per-render-task defaults to 1
    status = farm.client.get(f"/api/jobs/{job['id']}/status", headers=farm.auth(farm.user_key))
    assert status.status_code == 200
    assert status.json() | {"frames_done": 0} == {
        "id": job["id"],
        "status": "canceled",
        "finished": True,
        "succeeded": False,
        "frames_done": 0,
        "frame_count": 4,
        "failure_reason": None,
    }
    again = farm.client.delete(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key))
    assert_error(again, 409, "job_finished")


def test_jobs_are_private_to_their_owner_and_admins(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy).json()
    other = farm.client.get(f"/api/jobs/{job['id']}", headers=farm.auth(farm.other_user_key))
    assert_error(other, 404, "job_not_found")
    assert farm.client.get("/api/jobs", headers=farm.auth(farm.other_user_key)).json()["count"] == 0
    admin = farm.client.get(f"/api/jobs/{job['id']}", headers=farm.auth(farm.admin_key))
    assert admin.status_code == 200
    mine = farm.client.get("/api/jobs", headers=farm.auth(farm.user_key)).json()
    assert [j["id"] for j in mine["jobs"]] == [job["id"]]


def test_not_a_blend_is_refused_and_nothing_is_created(farm: Farm, tmp_path: Path):
    fake = tmp_path / "scene.blend"
    fake.write_bytes(b"this is a text file, not a Blender scene\n" * 10)
    assert_error(submit(farm, fake), 422, "not_a_blend")
    assert job_count(farm) == 0
    assert list((farm.settings.storage / "blobs").rglob("*")) == []
    assert list((farm.settings.storage / "temp").iterdir()) == []


def test_a_blend_under_another_extension_is_refused(farm: Farm, scene_bpy: Path, tmp_path: Path):
    renamed = tmp_path / "scene.txt"
    renamed.write_bytes(scene_bpy.read_bytes())
    assert_error(submit(farm, renamed), 422, "not_a_blend")
    assert job_count(farm) == 0


@pytest.mark.parametrize("frames", ["", "   ", "1-x", "10-1", "1,,3", "1-1000000"])
def test_bad_frame_ranges_are_refused(farm: Farm, scene_bpy: Path, frames: str):
    response = submit(farm, scene_bpy, frames=frames)
    assert response.status_code == 422, response.text
    assert response.json()["code"] in ("invalid_frame_range", "invalid_settings")
    assert "frame" in response.json()["message"]
    assert job_count(farm) == 0


def test_missing_frames_field_is_a_clear_422(farm: Farm, scene_bpy: Path):
    with open(scene_bpy, "rb") as f:
        response = farm.client.post(
            "/api/jobs", headers=farm.auth(farm.user_key), files={"file": ("a.blend", f)}
        )
    assert_error(response, 422, "invalid_settings")
    assert "frames: required" in response.json()["message"]


def test_unknown_job_is_404(farm: Farm):
    for path in ("/api/jobs/999", "/api/jobs/999/status", "/api/jobs/999/outputs"):
        assert_error(farm.client.get(path, headers=farm.auth(farm.user_key)), 404, "job_not_found")
    assert_error(
        farm.client.delete("/api/jobs/999", headers=farm.auth(farm.user_key)), 404, "job_not_found"
    )


def test_api_keys_are_required_and_checked(farm: Farm, scene_bpy: Path):
    assert_error(farm.client.get("/api/jobs"), 401, "missing_api_key")
    wrong = {"Authorization": "Bearer ff_not-a-real-key"}
    assert_error(farm.client.get("/api/jobs", headers=wrong), 401, "invalid_api_key")
    runner = farm.client.get("/api/jobs", headers=farm.auth(farm.runner_key))
    assert_error(runner, 403, "wrong_key_scope")
    assert_error(submit(farm, scene_bpy, key="ff_wrong"), 401, "invalid_api_key")
    assert job_count(farm) == 0


def test_output_names_cannot_escape_the_job(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy).json()
    response = farm.client.get(
        f"/api/jobs/{job['id']}/outputs/..%2F..%2Fframefarm.db", headers=farm.auth(farm.user_key)
    )
    assert response.status_code in (404, 422)
    assert response.json()["code"] in ("invalid_path", "output_not_found", "not_found")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_that_grows_the_tasks_table_refreshes_postgresqls_statistics(
    farm: Farm, scene_bpy: Path
):
    """The claim's plan rests on them: stale ones made PostgreSQL join every job with every
    queued task (seconds per claim) until autovacuum caught up a minute or more later."""
    engine = farm.client.app.state.engine  # type: ignore[attr-defined]

    def estimated_tasks() -> float:
        with engine.connect() as conn:
            query = "SELECT reltuples FROM pg_class WHERE oid = 'tasks'::regclass"
            return float(conn.exec_driver_sql(query).scalar_one())

    assert submit(farm, scene_bpy, frames="1-300").status_code == 202
    assert estimated_tasks() >= 300  # (a table never analysed says -1)
    assert submit(farm, scene_bpy, frames="1-20").status_code == 202
    assert estimated_tasks() < 320  # a tenth or less: left to autovacuum
    assert submit(farm, scene_bpy, frames="1-200").status_code == 202
    assert estimated_tasks() >= 500
