"""The job events WebSocket over a real uvicorn server, with the client the README shows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import LiveFarm

pytestmark = pytest.mark.e2e


async def first_message(url: str, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(url, additional_headers=headers) as socket:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        return message


def test_uvicorn_streams_events_and_refuses_with_the_error_body(live_farm: LiveFarm):
    url = live_farm.url.replace("http://", "ws://") + "/api/jobs/ws"
    snapshot = asyncio.run(first_message(url, live_farm.user_key))
    assert snapshot == {"type": "snapshot", "events": []}
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(first_message(url, live_farm.runner_key))
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body or b"{}")["code"] == "wrong_key_scope"
