"""Runner API against a real app: claim, report, upload, complete, fail, long poll."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from tests.manager.conftest import Farm
from tests.manager.test_jobs_api import assert_error, submit


def register(farm: Farm, name: str = "node-1") -> int:
    response = farm.client.post(
        "/api/runner/register",
        headers=farm.auth(farm.runner_key),
        json={"name": name, "blender": {"kind": "bpy", "version": "5.0.1"}},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["id"])


def claim(farm: Farm, runner_id: int, wait: float = 0):
    return farm.client.post(
        f"/api/runner/{runner_id}/claim", params={"wait": wait}, headers=farm.auth(farm.runner_key)
    )


def upload(
    farm: Farm, runner_id: int, task_id: int, frame: int, body: bytes, sha: str | None = None
):
    return farm.client.put(
        f"/api/runner/{runner_id}/tasks/{task_id}/outputs/frame_{frame:06d}.exr",
        headers={
            **farm.auth(farm.runner_key),
            "X-Checksum-SHA256": sha or hashlib.sha256(body).hexdigest(),
            "X-Frame": str(frame),
        },
        content=body,
    )


def status(farm: Farm, job_id: int):
    return farm.client.get(f"/api/jobs/{job_id}/status", headers=farm.auth(farm.user_key))


def test_claim_without_work_is_204(farm: Farm):
    runner_id = register(farm)
    assert claim(farm, runner_id).status_code == 204


def test_a_job_runs_to_completion_through_the_runner_api(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1-3", chunk_size="2").json()
    runner_id = register(farm)

    first = claim(farm, runner_id)
    assert first.status_code == 200, first.text
    task = first.json()
    assert task["name"] == "render-1,2"
    assert task["frames"] == [1, 2]
    assert task["commands"][0]["name"] == "blender-render"
    assert task["job"]["files"][0]["path"] == scene_bpy.name
    blob = farm.client.get(
        f"/api/runner/blobs/{task['job']['files'][0]['sha256']}", headers=farm.auth(farm.runner_key)
    )
    assert blob.content == scene_bpy.read_bytes()
    assert (
        farm.client.get(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key)).json()["status"]
        == "active"
    )

    progress = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task['id']}/progress",
        headers=farm.auth(farm.runner_key),
        json={"frames_done": 1, "activity": "frame 1", "log": ["Blender says hi"]},
    )
    assert progress.json() == {"keep_running": True, "reason": None}
    log_file = farm.settings.storage / "jobs" / str(job["id"]) / "logs" / f"task-{task['id']}.log"
    assert log_file.read_text() == "Blender says hi\n"

    # Completing before every frame arrived is refused, and the task stays active.
    assert upload(farm, runner_id, task["id"], 1, b"frame one").status_code == 201
    early = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task['id']}/complete", headers=farm.auth(farm.runner_key)
    )
    assert_error(early, 409, "outputs_missing")
    assert upload(farm, runner_id, task["id"], 2, b"frame two").status_code == 201
    done = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task['id']}/complete", headers=farm.auth(farm.runner_key)
    )
    assert done.status_code == 204
    assert status(farm, job["id"]).status_code == 202

    second = claim(farm, runner_id).json()
    assert second["frames"] == [3]
    assert upload(farm, runner_id, second["id"], 3, b"frame three").status_code == 201
    farm.client.post(
        f"/api/runner/{runner_id}/tasks/{second['id']}/complete", headers=farm.auth(farm.runner_key)
    )
    final = status(farm, job["id"])
    assert final.status_code == 200
    assert final.json()["status"] == "completed"
    assert final.json()["succeeded"] is True
    assert final.json()["frames_done"] == 3

    outputs = farm.client.get(f"/api/jobs/{job['id']}/outputs", headers=farm.auth(farm.user_key))
    names = [o["name"] for o in outputs.json()["outputs"]]
    assert names == ["frame_000001.exr", "frame_000002.exr", "frame_000003.exr"]
    frame2 = farm.client.get(outputs.json()["outputs"][1]["url"], headers=farm.auth(farm.user_key))
    assert frame2.content == b"frame two"


def test_an_output_uploaded_again_replaces_the_first(farm: Farm, scene_bpy: Path):
    submit(farm, scene_bpy, frames="1")
    first_runner = register(farm)
    task = claim(farm, first_runner).json()
    assert upload(farm, first_runner, task["id"], 1, b"first try").status_code == 201
    assert upload(farm, first_runner, task["id"], 1, b"second try!").status_code == 201
    released = farm.client.post(
        f"/api/runner/{first_runner}/tasks/{task['id']}/release",
        headers=farm.auth(farm.runner_key),
        json={"reason": "shutting down"},
    )
    assert released.status_code == 204
    second_runner = register(farm, "node-2")
    again = claim(farm, second_runner).json()
    assert again["id"] == task["id"]
    assert upload(farm, second_runner, task["id"], 1, b"the next attempt").status_code == 201
    outputs = farm.client.get(
        f"/api/jobs/{task['job']['id']}/outputs", headers=farm.auth(farm.user_key)
    ).json()
    assert [(o["name"], o["size"], o["frame"]) for o in outputs["outputs"]] == [
        ("frame_000001.exr", len(b"the next attempt"), 1)
    ]
    assert outputs["outputs"][0]["sha256"] == hashlib.sha256(b"the next attempt").hexdigest()
    stored = farm.client.get(outputs["outputs"][0]["url"], headers=farm.auth(farm.user_key))
    assert stored.content == b"the next attempt"
    done = farm.client.post(
        f"/api/runner/{second_runner}/tasks/{task['id']}/complete",
        headers=farm.auth(farm.runner_key),
    )
    assert done.status_code == 204, done.text


def test_damaged_upload_is_refused_and_not_stored(farm: Farm, scene_bpy: Path):
    submit(farm, scene_bpy, frames="1")
    runner_id = register(farm)
    task = claim(farm, runner_id).json()
    response = upload(farm, runner_id, task["id"], 1, b"the bytes", sha="0" * 64)
    assert_error(response, 422, "checksum_mismatch")
    outputs = farm.client.get(
        f"/api/jobs/{task['job']['id']}/outputs", headers=farm.auth(farm.user_key)
    )
    assert outputs.json()["count"] == 0
    assert not list((farm.settings.storage / "outputs").rglob("*.exr"))


def fail(farm: Farm, runner_id: int, task_id: int, reason: str) -> None:
    response = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task_id}/fail",
        headers=farm.auth(farm.runner_key),
        json={"reason": reason},
    )
    assert response.status_code == 204, response.text


def test_a_failed_task_goes_to_other_runners_then_fails_the_job(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1-2", chunk_size="1").json()
    runners = [register(farm, f"node-{i}") for i in (1, 2, 3)]
    for number, runner_id in enumerate(runners, start=1):
        task = claim(farm, runner_id).json()
        assert task["name"] == "render-1"  # a soft-failed task comes first, on another runner
        fail(farm, runner_id, task["id"], f"Blender exited with code 1 (runner {number})")
        if number < 3:
            tasks = farm.client.get(
                f"/api/jobs/{job['id']}/tasks", headers=farm.auth(farm.user_key)
            ).json()
            assert tasks[0]["status"] == "soft-failed"
            assert f"({number}/3)" in tasks[0]["activity"]
    final = status(farm, job["id"])
    assert final.status_code == 200
    body = final.json()
    assert body["status"] == "failed"
    assert body["succeeded"] is False
    assert "runner 3" in body["failure_reason"]
    assert "1 of 2 tasks failed" in body["failure_reason"]
    assert claim(farm, runners[0]).status_code == 204  # the other task was canceled


def test_canceled_job_tells_the_runner_to_stop(farm: Farm, scene_bpy: Path):
    job = submit(farm, scene_bpy, frames="1").json()
    runner_id = register(farm)
    task = claim(farm, runner_id).json()
    farm.client.delete(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key))
    reply = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task['id']}/progress",
        headers=farm.auth(farm.runner_key),
        json={"frames_done": 0},
    )
    assert reply.json() == {"keep_running": False, "reason": "the job was canceled"}
    assert (
        farm.client.get(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key)).json()["status"]
        == "cancel-requested"
    )
    assert_error(upload(farm, runner_id, task["id"], 1, b"late"), 409, "task_not_active")
    released = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task['id']}/release",
        headers=farm.auth(farm.runner_key),
        json={"reason": "stopped as asked"},
    )
    assert released.status_code == 204
    final = status(farm, job["id"])
    assert final.status_code == 200
    assert final.json()["status"] == "canceled"


def test_release_requeues_at_once(farm: Farm, scene_bpy: Path):
    submit(farm, scene_bpy, frames="1")
    runner_id = register(farm)
    task = claim(farm, runner_id).json()
    released = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task['id']}/release",
        headers=farm.auth(farm.runner_key),
        json={"reason": "shutting down"},
    )
    assert released.status_code == 204
    again = claim(farm, register(farm, "node-2")).json()
    assert again["id"] == task["id"]
    assert again["attempt"] == 1


def test_long_poll_hands_out_new_work_at_once(farm: Farm, scene_bpy: Path):
    runner_id = register(farm)
    result: dict[str, object] = {}

    def wait_for_task() -> None:
        started = time.monotonic()
        response = claim(farm, runner_id, wait=20)
        result["status"] = response.status_code
        result["returned_at"] = time.monotonic()
        result["waited"] = time.monotonic() - started

    waiter = threading.Thread(target=wait_for_task)
    waiter.start()
    time.sleep(0.5)
    submitted_at = time.monotonic()
    submit(farm, scene_bpy, frames="1")
    waiter.join(10)
    assert result["status"] == 200
    assert float(result["returned_at"]) - submitted_at < 1.0  # type: ignore[arg-type]


def test_runner_api_takes_runner_keys_only(farm: Farm):
    response = farm.client.post(
        "/api/runner/register", headers=farm.auth(farm.user_key), json={"name": "sneaky"}
    )
    assert_error(response, 403, "wrong_key_scope")
    assert_error(
        farm.client.post("/api/runner/register", json={"name": "x"}), 401, "missing_api_key"
    )


def test_bad_runner_name_is_422(farm: Farm):
    response = farm.client.post(
        "/api/runner/register", headers=farm.auth(farm.runner_key), json={"name": "../etc"}
    )
    assert_error(response, 422, "invalid_input")
