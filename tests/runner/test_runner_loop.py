"""The task loop against a scripted manager (an httpx MockTransport): what it does when the
manager forgets the runner, and when it refuses the runner for good."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from runner.client import ManagerClient
from runner.errors import ManagerRejected
from runner.loop import Runner
from runner.workspace import Workspace


def test_a_forgotten_runner_registers_again_and_a_refused_one_stops(tmp_path: Path) -> None:
    calls: list[str] = []
    claims = iter(
        [
            httpx.Response(404, json={"code": "runner_not_found", "message": "register again"}),
            httpx.Response(401, json={"code": "invalid_api_key", "message": "key revoked"}),
        ]
    )

    def manager(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/register"):
            runner_id = sum(c.endswith("/register") for c in calls)
            return httpx.Response(200, json={"id": runner_id, "heartbeat_interval": 60})
        if request.url.path.endswith("/claim"):
            return next(claims)
        return httpx.Response(500)

    client = ManagerClient("http://farm", "ff_k", transport=httpx.MockTransport(manager))
    runner = Runner(client, None, Workspace(tmp_path / "w"), name="node-1")
    with pytest.raises(ManagerRejected, match="key revoked"):
        runner.run()
    assert calls == [
        "POST /api/runner/register",
        "POST /api/runner/1/claim",
        "POST /api/runner/register",
        "POST /api/runner/2/claim",
    ]


def _task(task_id: int) -> dict[str, object]:
    return {
        "id": task_id,
        "name": f"step-{task_id}",
        "type": "misc",
        "frames": [],
        "commands": [{"name": "echo", "parameters": {"message": f"step {task_id}"}}],
        "attempt": 1,
        "job": {
            "id": 7,
            "name": "chain",
            "priority": 50,
            "blend_file": "-",
            "blender_version": "",
            "settings": {},
            "files": [],
        },
    }


def _scripted_manager(answers: dict[str, list[httpx.Response]], calls: list[str]):  # type: ignore[no-untyped-def]
    """A manager that answers each ``METHOD path?query`` from its list, in turn."""

    def manager(request: httpx.Request) -> httpx.Response:
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        call = f"{request.method} {request.url.path}{query}"
        calls.append(call)
        if request.url.path.endswith("/register"):
            return httpx.Response(200, json={"id": 1, "heartbeat_interval": 60})
        if request.url.path.endswith("/progress"):
            return httpx.Response(200, json={"keep_running": True, "reason": None})
        if answers.get(call):
            return answers[call].pop(0)
        return httpx.Response(401, json={"code": "invalid_api_key", "message": "key revoked"})

    return manager


def test_a_completion_asks_for_the_next_task_in_the_same_request(tmp_path: Path) -> None:
    calls: list[str] = []
    answers = {
        "POST /api/runner/1/claim?wait=30.0": [httpx.Response(200, json=_task(1))],
        "POST /api/runner/1/claim?wait=0&completed=1": [httpx.Response(200, json=_task(2))],
        "POST /api/runner/1/claim?wait=0&completed=2": [httpx.Response(204)],
    }
    transport = httpx.MockTransport(_scripted_manager(answers, calls))
    client = ManagerClient("http://farm", "ff_k", transport=transport)
    runner = Runner(client, None, Workspace(tmp_path / "w"), name="node-1")
    with pytest.raises(ManagerRejected, match="key revoked"):
        runner.run()
    claims = [c for c in calls if "/claim" in c or "/complete" in c]
    assert claims == [
        "POST /api/runner/1/claim?wait=30.0",
        "POST /api/runner/1/claim?wait=0&completed=1",  # task 2 came with task 1's completion
        "POST /api/runner/1/claim?wait=0&completed=2",  # nothing came with task 2's
        "POST /api/runner/1/claim?wait=30.0",  # so the runner waits for work as usual
    ]


def test_a_runners_last_task_completes_alone(tmp_path: Path) -> None:
    calls: list[str] = []
    answers = {"POST /api/runner/1/claim?wait=30.0": [httpx.Response(200, json=_task(1))]}
    transport = httpx.MockTransport(_scripted_manager(answers, calls))
    client = ManagerClient("http://farm", "ff_k", transport=transport)
    runner = Runner(client, None, Workspace(tmp_path / "w"), name="node-1")
    runner.run(max_tasks=1)
    assert [c for c in calls if "/claim" in c or "/complete" in c] == [
        "POST /api/runner/1/claim?wait=30.0",
        "POST /api/runner/1/tasks/1/complete",  # nothing asked for with it
    ]


def test_a_task_handed_over_as_the_runner_stops_goes_back(tmp_path: Path) -> None:
    calls: list[str] = []
    runners: list[Runner] = []

    def stop_then_hand_over(request: httpx.Request) -> httpx.Response:
        runners[0].stop.request()  # (Ctrl+C while the completion was on its way)
        return httpx.Response(200, json=_task(2))

    answers = {"POST /api/runner/1/claim?wait=30.0": [httpx.Response(200, json=_task(1))]}
    scripted = _scripted_manager(answers, calls)

    def manager(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("completed") == "1":
            calls.append("completed 1")
            return stop_then_hand_over(request)
        if request.url.path.endswith("/tasks/2/release"):
            calls.append("released 2")
            return httpx.Response(204)
        return scripted(request)

    client = ManagerClient("http://farm", "ff_k", transport=httpx.MockTransport(manager))
    runners.append(Runner(client, None, Workspace(tmp_path / "w"), name="node-1"))
    runners[0].run()
    assert [c for c in calls if "/" not in c] == ["completed 1", "released 2"]
    assert not [c for c in calls if "/tasks/2/" in c and "release" not in c]  # never started
