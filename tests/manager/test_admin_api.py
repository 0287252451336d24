"""Admin API: runners, users, keys, all jobs, farm numbers and settings."""

from __future__ import annotations

from sqlmodel import Session

from manager.db import session_scope
from manager.models import Job, Task
from manager.users import get_user_by_email
from tests.manager.auth_helpers import assert_error, engine_of
from tests.manager.conftest import Farm
from tests.manager.factories import make_job


def _job_of(farm: Farm, email: str, tasks: int = 2) -> int:
    with session_scope(engine_of(farm)) as session:
        job, _ = make_job(session, tasks=tasks, name=f"job of {email}")
        job.owner_id = get_user_by_email(session, email).id
        session.add(job)
        session.flush()
        assert job.id is not None
        return job.id


def _register(farm: Farm, name: str) -> int:
    response = farm.client.post(
        "/api/runner/register",
        json={"name": name, "task_types": ["blender"]},
        headers=farm.auth(farm.runner_key),
    )
    assert response.status_code == 200, response.text
    return int(response.json()["id"])


def _claim(farm: Farm, runner_id: int):  # type: ignore[no-untyped-def]
    return farm.client.post(
        f"/api/runner/{runner_id}/claim", params={"wait": 0}, headers=farm.auth(farm.runner_key)
    )


def test_disable_enable_and_delete_a_runner(farm: Farm):
    admin = farm.auth(farm.admin_key)
    _job_of(farm, "artist@example.com", tasks=2)
    runner_id = _register(farm, "node-1")

    disabled = farm.client.post(f"/api/admin/runners/{runner_id}/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert _claim(farm, runner_id).status_code == 204  # a disabled runner gets nothing
    enabled = farm.client.post(f"/api/admin/runners/{runner_id}/enable", headers=admin)
    assert enabled.json()["enabled"] is True
    claimed = _claim(farm, runner_id)
    assert claimed.status_code == 200, claimed.text
    task_id = claimed.json()["id"]

    listed = farm.client.get("/api/admin/runners", headers=admin).json()
    assert [(r["name"], r["active_tasks"]) for r in listed] == [("node-1", [task_id])]

    assert farm.client.delete(f"/api/admin/runners/{runner_id}", headers=admin).status_code == 204
    assert farm.client.get("/api/admin/runners", headers=admin).json() == []
    with Session(engine_of(farm)) as session:
        task = session.get(Task, task_id)
        assert task is not None and task.status == "queued" and task.runner_id is None
        assert "deleted by an admin" in task.activity
    assert_error(
        farm.client.delete(f"/api/admin/runners/{runner_id}", headers=admin),
        404,
        "runner_not_found",
    )


def test_users_admins_and_the_last_admin(farm: Farm):
    admin = farm.auth(farm.admin_key)
    users = {u["email"]: u for u in farm.client.get("/api/admin/users", headers=admin).json()}
    assert set(users) == {"admin@example.com", "artist@example.com", "other@example.com"}
    assert users["artist@example.com"]["api_keys"] == 1
    artist, me = users["artist@example.com"]["id"], users["admin@example.com"]["id"]

    assert_error(
        farm.client.delete(f"/api/admin/users/{me}/admin", headers=admin), 409, "last_admin"
    )
    assert_error(
        farm.client.delete(f"/api/admin/users/{me}", headers=admin), 409, "cannot_delete_self"
    )
    assert farm.client.post(f"/api/admin/users/{artist}/admin", headers=admin).status_code == 204
    assert farm.client.get("/api/admin/stats", headers=farm.auth(farm.user_key)).status_code == 200
    assert farm.client.delete(f"/api/admin/users/{artist}/admin", headers=admin).status_code == 204
    assert_error(
        farm.client.get("/api/admin/stats", headers=farm.auth(farm.user_key)), 403, "admin_only"
    )
    assert_error(
        farm.client.post("/api/admin/users/999/admin", headers=admin), 404, "user_not_found"
    )


def test_deleting_a_user_ends_their_keys_and_keeps_their_jobs(farm: Farm):
    admin = farm.auth(farm.admin_key)
    job_id = _job_of(farm, "other@example.com")
    other = next(
        u["id"] for u in farm.client.get("/api/admin/users", headers=admin).json() if u["jobs"]
    )
    assert farm.client.delete(f"/api/admin/users/{other}", headers=admin).status_code == 204
    assert_error(
        farm.client.get("/api/jobs", headers=farm.auth(farm.other_user_key)), 401, "invalid_api_key"
    )
    jobs = farm.client.get("/api/admin/jobs", headers=admin).json()
    assert [(j["id"], j["owner_id"], j["owner_email"]) for j in jobs["jobs"]] == [
        (job_id, None, None)
    ]
    with Session(engine_of(farm)) as session:
        assert session.get(Job, job_id) is not None


def test_admins_see_every_job_with_its_owner(farm: Farm):
    admin = farm.auth(farm.admin_key)
    mine = _job_of(farm, "artist@example.com")
    theirs = _job_of(farm, "other@example.com")
    listed = farm.client.get("/api/admin/jobs", headers=admin).json()
    assert listed["count"] == 2
    assert {j["id"]: j["owner_email"] for j in listed["jobs"]} == {
        mine: "artist@example.com",
        theirs: "other@example.com",
    }
    only = farm.client.get(
        "/api/admin/jobs", params={"owner_id": listed["jobs"][0]["owner_id"]}, headers=admin
    )
    assert only.json()["count"] == 1
    # A user sees only their own in the jobs API; an admin sees both there too.
    assert [
        j["id"]
        for j in farm.client.get("/api/jobs", headers=farm.auth(farm.user_key)).json()["jobs"]
    ] == [mine]
    assert farm.client.get("/api/jobs", headers=admin).json()["count"] == 2


def test_stats_count_the_farm(farm: Farm):
    admin = farm.auth(farm.admin_key)
    _job_of(farm, "artist@example.com", tasks=3)
    runner_id = _register(farm, "node-1")
    farm.client.post(f"/api/admin/runners/{runner_id}/disable", headers=admin)
    stats = farm.client.get("/api/admin/stats", headers=admin).json()
    assert stats["users"] == 3 and stats["admins"] == 1 and stats["api_keys"] == 4
    assert stats["runners"] == {"total": 1, "idle": 1, "working": 0, "offline": 0, "disabled": 1}
    assert stats["jobs"] == {"queued": 1}
    assert stats["tasks"] == {"queued": 3}


def test_settings_are_shown_masked_and_changed_except_secrets(farm: Farm):
    admin = farm.auth(farm.admin_key)
    shown = {s["name"]: s for s in farm.client.get("/api/admin/settings", headers=admin).json()}
    assert shown["localauth"]["value"] is False and shown["registration"]["value"] is False
    assert shown["google-oauth"]["secret"] is True

    changed = farm.client.put(
        "/api/admin/settings/frames-per-render-task", json={"value": "5"}, headers=admin
    )
    assert changed.status_code == 200 and changed.json()["value"] == 5
    on = farm.client.put("/api/admin/settings/registration", json={"value": "on"}, headers=admin)
    assert on.json()["value"] is True
    assert_error(
        farm.client.put(
            "/api/admin/settings/frames-per-render-task", json={"value": "0"}, headers=admin
        ),
        422,
        "invalid_setting",
    )
    assert_error(
        farm.client.put("/api/admin/settings/google-oauth", json={"value": "x"}, headers=admin),
        422,
        "secret_setting",
    )
    assert_error(
        farm.client.put("/api/admin/settings/nope", json={"value": "1"}, headers=admin),
        422,
        "unknown_setting",
    )
