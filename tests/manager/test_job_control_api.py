"""Job control over HTTP: pause, resume, cancel, requeue, priority, pins, delete, bulk; metrics."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.manager.conftest import Farm
from tests.manager.test_jobs_api import assert_error, submit
from tests.manager.test_runner_api import claim, fail, register, upload


def post(farm: Farm, path: str, json: object | None = None, key: str | None = None):
    return farm.client.post(path, headers=farm.auth(key or farm.user_key), json=json)


def get_job(farm: Farm, job_id: int) -> dict:
    return farm.client.get(f"/api/jobs/{job_id}", headers=farm.auth(farm.user_key)).json()


def test_pause_resume_and_illegal_transitions(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1-2").json()
    assert_error(post(farm, f"/api/jobs/{job['id']}/resume"), 409, "illegal_transition")
    paused = post(farm, f"/api/jobs/{job['id']}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    runner_id = register(farm)
    assert claim(farm, runner_id).status_code == 204
    assert post(farm, f"/api/jobs/{job['id']}/resume").json()["status"] == "queued"
    assert claim(farm, runner_id).status_code == 200
    cancel = post(farm, f"/api/jobs/{job['id']}/cancel")
    assert cancel.json()["status"] == "cancel-requested"
    assert "waiting for 1 runner" in cancel.json()["activity"]
    assert_error(post(farm, f"/api/jobs/{job['id']}/pause"), 409, "illegal_transition")


def test_requeue_failed_tasks_then_the_whole_job(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1").json()
    runner_id = register(farm)
    task = claim(farm, runner_id).json()
    fail(farm, runner_id, task["id"], "Blender crashed")  # only runner: the job fails
    failed = get_job(farm, job["id"])
    assert failed["status"] == "failed"
    assert "no runner is left" in failed["failure_reason"]
    requeued = post(farm, f"/api/jobs/{job['id']}/requeue", {"failed_only": True})
    assert requeued.status_code == 200
    assert requeued.json()["status"] == "queued"
    assert requeued.json()["failure_reason"] is None
    again = claim(farm, runner_id).json()
    assert again["id"] == task["id"]
    assert_error(
        post(farm, f"/api/jobs/{job['id']}/requeue", {"failed_only": False}),
        409,
        "illegal_transition",
    )
    assert upload(farm, runner_id, again["id"], 1, b"exr").status_code == 201
    post(farm, f"/api/runner/{runner_id}/tasks/{again['id']}/complete", key=farm.runner_key)
    assert get_job(farm, job["id"])["status"] == "completed"
    requeued_task = post(farm, f"/api/jobs/{job['id']}/tasks/{task['id']}/requeue")
    assert requeued_task.json()["status"] == "queued"
    assert get_job(farm, job["id"])["status"] == "queued"


def test_priority_and_pins(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1").json()
    changed = farm.client.patch(
        f"/api/jobs/{job['id']}",
        headers=farm.auth(farm.user_key),
        json={"priority": 90, "runners": ["node-b"]},
    )
    assert changed.status_code == 200
    assert changed.json()["priority"] == 90
    assert changed.json()["runners"] == ["node-b"]
    assert claim(farm, register(farm, "node-a")).status_code == 204
    assert claim(farm, register(farm, "node-b")).status_code == 200
    too_high = farm.client.patch(
        f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key), json={"priority": 101}
    )
    assert_error(too_high, 422, "invalid_input")


def test_tagged_job_from_the_api(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1", tag="gpu").json()
    assert job["tag"] == "gpu"
    assert claim(farm, register(farm, "cpu-node")).status_code == 204
    tagged = farm.client.post(
        "/api/runner/register",
        headers=farm.auth(farm.runner_key),
        json={"name": "gpu-node", "tags": ["gpu"]},
    ).json()
    assert claim(farm, tagged["id"]).status_code == 200


def test_delete_removes_the_job_and_its_files(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1").json()
    runner_id = register(farm)
    task = claim(farm, runner_id).json()
    assert upload(farm, runner_id, task["id"], 1, b"exr").status_code == 201
    outputs = farm.settings.storage / "outputs" / str(job["id"])
    assert outputs.is_dir()
    deleted = post(farm, f"/api/jobs/{job['id']}/delete")
    assert deleted.status_code == 202
    assert_error(
        farm.client.get(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key)),
        404,
        "job_not_found",
    )
    assert not outputs.exists()
    progress = post(
        farm, f"/api/runner/{runner_id}/tasks/{task['id']}/progress", {}, key=farm.runner_key
    )
    assert progress.json()["keep_running"] is False


def test_bulk_actions_report_each_job(farm: Farm, scene_bpy: Path):
    first = submit(farm, scene_bpy, frames="1").json()
    second = submit(farm, scene_bpy, frames="2").json()
    other = submit(farm, scene_bpy, frames="3", key=farm.other_user_key).json()
    reply = post(
        farm,
        "/api/jobs/bulk",
        {"action": "pause", "job_ids": [first["id"], second["id"], other["id"], 999]},
    )
    assert reply.status_code == 200
    results = {r["job_id"]: r for r in reply.json()["results"]}
    assert results[first["id"]]["ok"] and results[second["id"]]["ok"]
    assert results[other["id"]] == {
        "job_id": other["id"],
        "ok": False,
        "code": "job_not_found",
        "message": f"there is no job {other['id']}",
    }
    assert results[999]["code"] == "job_not_found"
    assert get_job(farm, first["id"])["status"] == "paused"
    again = post(farm, "/api/jobs/bulk", {"action": "resume", "job_ids": [first["id"]]})
    assert again.json()["results"][0]["ok"] is True
    assert_error(
        post(farm, "/api/jobs/bulk", {"action": "explode", "job_ids": [1]}), 422, "invalid_input"
    )


def test_long_poll_gets_a_resumed_task_within_100_ms(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1").json()
    post(farm, f"/api/jobs/{job['id']}/pause")
    runner_id = register(farm)
    returned: list[float] = []

    def wait_for_task() -> None:
        response = claim(farm, runner_id, wait=20)
        assert response.status_code == 200
        returned.append(time.monotonic())

    waiter = threading.Thread(target=wait_for_task)
    waiter.start()
    time.sleep(0.5)
    post(farm, f"/api/jobs/{job['id']}/resume")
    resumed = time.monotonic()
    waiter.join(10)
    assert returned, "the waiting runner got nothing"
    assert returned[0] - resumed < 0.1


def test_metrics_count_states_and_claims(farm: Farm, scene_bpy: Path):
    submit(farm, scene_bpy, frames="1-3")
    runner_id = register(farm)
    claim(farm, runner_id)
    text = farm.client.get("/metrics").text
    assert 'framefarm_jobs{state="active"} 1.0' in text
    assert 'framefarm_tasks{state="queued"} 2.0' in text
    assert 'framefarm_tasks{state="active"} 1.0' in text
    assert 'framefarm_runners{state="working"} 1.0' in text
    assert "framefarm_claim_seconds_count 1.0" in text
