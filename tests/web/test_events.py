"""WebSocket /api/jobs/ws: a snapshot, then job and task events as the database changes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlmodel import select
from starlette.testclient import WebSocketDenialResponse, WebSocketTestSession

from manager.auth.passwords import set_password
from manager.farm_settings import set_setting
from manager.models import Job, Task, utcnow
from manager.users import get_user_by_email
from tests.manager.factories import make_job
from tests.web.conftest import WebFarm


def next_events(socket: WebSocketTestSession, wanted: int) -> list[dict[str, Any]]:
    return [socket.receive_json() for _ in range(wanted)]


def test_snapshot_then_the_changes_of_the_users_own_jobs(web_farm: WebFarm, rendering_job: int):
    with web_farm.session() as session:
        theirs, _ = make_job(session, tasks=1, name="someone else's")
        theirs.owner_id = get_user_by_email(session, "other@example.com").id
        session.add(theirs)
        session.commit()
    headers = web_farm.as_key(web_farm.artist_key)
    with web_farm.client.websocket_connect("/api/jobs/ws", headers=headers) as socket:
        snapshot = socket.receive_json()
        assert snapshot["type"] == "snapshot"
        jobs = [e["job"] for e in snapshot["events"] if e["type"] == "job"]
        assert [(j["id"], j["frames_done"], j["frame_count"]) for j in jobs] == [
            (rendering_job, 2, 4)
        ]
        tasks = [e["task"] for e in snapshot["events"] if e["type"] == "task"]
        assert [t["status"] for t in tasks] == ["completed", "completed", "active", "queued"]
        assert tasks[2]["runner"] == "node-01"

        started = time.monotonic()
        with web_farm.session() as session:
            task = session.exec(
                select(Task).where(Task.job_id == rendering_job, Task.status == "active")
            ).one()
            task.frames_done, task.updated_at = 1, utcnow()
            session.add(task)
            session.commit()
        task_event, job_event = next_events(socket, 2)
        assert time.monotonic() - started < 3
        assert task_event["type"] == "task" and task_event["task"]["frames_done"] == 1
        assert job_event["type"] == "job" and job_event["job"]["frames_done"] == 3

        with web_farm.session() as session:
            job = session.get(Job, rendering_job)
            session.delete(job)
            session.commit()
        assert socket.receive_json() == {"type": "job_deleted", "job_id": rendering_job}


def test_one_job_only_and_never_someone_elses(web_farm: WebFarm, rendering_job: int):
    with web_farm.session() as session:
        other_job, _ = make_job(session, tasks=1, name="mine too")
        other_job.owner_id = get_user_by_email(session, "artist@example.com").id
        session.add(other_job)
        session.commit()
    url = f"/api/jobs/ws?job_id={rendering_job}"
    with web_farm.client.websocket_connect(url, headers=web_farm.as_key(web_farm.artist_key)) as ws:
        events = ws.receive_json()["events"]
        assert {e["job"]["id"] for e in events if e["type"] == "job"} == {rendering_job}
    for key, status, code in (
        (web_farm.other_key, 404, "job_not_found"),
        (web_farm.runner_key, 403, "wrong_key_scope"),
        ("ff_not-a-key", 401, "invalid_api_key"),
    ):
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            web_farm.client.websocket_connect(url, headers=web_farm.as_key(key)),
        ):
            pass
        assert refused.value.status_code == status
        assert refused.value.json()["code"] == code


def test_a_page_session_works_only_from_this_farm(web_farm: WebFarm, rendering_job: int):
    with web_farm.session() as session:
        set_setting(session, "localauth", "on")
        set_password(session, get_user_by_email(session, "artist@example.com"), "a long password")
        session.commit()
    signed_in = web_farm.client.post(
        "/api/auth/login", json={"email": "artist@example.com", "password": "a long password"}
    )
    assert signed_in.status_code == 200
    elsewhere = {"Origin": "https://evil.example"}
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        web_farm.client.websocket_connect("/api/jobs/ws", headers=elsewhere),
    ):
        pass
    assert refused.value.status_code == 403 and refused.value.json()["code"] == "csrf_failed"
    same_site = {"Origin": "http://testserver"}
    with web_farm.client.websocket_connect("/api/jobs/ws", headers=same_site) as socket:
        events = socket.receive_json()["events"]
    assert rendering_job in {e["job"]["id"] for e in events if e["type"] == "job"}
