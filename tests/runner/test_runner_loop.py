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
