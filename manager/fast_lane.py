"""The runner API's hottest requests, answered without FastAPI's per-request machinery.

Every task costs a farm a claim and a completion, and every runner a heartbeat every few
seconds; with many runners and short tasks that is hundreds of requests a second. FastAPI
spends about 1.1 ms of CPU on each (routing through every route, dependency solving,
validation, serialisation, a thread hop) where a bare ASGI answer costs 0.16 ms (both
measured on the 2-core test machine), which made the framework, not the database, the
manager's limit.

This middleware answers ``POST /api/runner/{id}/claim`` (also with ``completed``, a task it
completes first), ``…/heartbeat``,
``POST /api/runner/{id}/tasks/{id}/progress`` and ``…/complete`` itself when the request is
the ordinary kind a runner sends: ids and query parameters that are plain numbers in range,
one ``Authorization: Bearer`` header, and for progress a JSON body (``Content-Type:
application/json``) that the route's own model accepts. It calls the same functions as the
FastAPI routes (``runner_key``, ``long_poll_claim``, ``runner_heartbeat``,
``runner_progress``, ``complete_task``) and answers errors through the same mapping, so the
two give the same answers. Anything else (another form of the request, bad input) goes on
to FastAPI, which keeps validating, documenting and answering it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from urllib.parse import parse_qsl

from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from manager.deps import runner_key
from manager.errors import response_for
from manager.models import ApiKey
from manager.routers.runner_api import (
    complete_task,
    long_poll_claim,
    runner_heartbeat,
    runner_progress,
)
from manager.schemas import MAX_ROW_ID, TaskProgress

_CLAIM = re.compile(r"/api/runner/(\d{1,19})/claim")
_COMPLETE = re.compile(r"/api/runner/(\d{1,19})/tasks/(\d{1,19})/complete")
_HEARTBEAT = re.compile(r"/api/runner/(\d{1,19})/heartbeat")
_PROGRESS = re.compile(r"/api/runner/(\d{1,19})/tasks/(\d{1,19})/progress")
_NUMBER = re.compile(r"\d{1,19}(\.\d{1,9})?")
_JSON = (b"content-type", b"application/json")


class RunnerFastLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        claim = _CLAIM.fullmatch(path)
        complete = None if claim else _COMPLETE.fullmatch(path)
        beat = None if claim or complete else _HEARTBEAT.fullmatch(path)
        progress = None if claim or complete or beat else _PROGRESS.fullmatch(path)
        ids = _row_ids(claim or complete or beat or progress)
        token = _bearer_token(scope) if ids else None
        query = _query(scope) if token else None
        if ids is None or token is None or query is None:
            await self.app(scope, receive, send)
            return
        report: TaskProgress | None = None
        if progress is not None:
            body = await _body(receive)
            report = _progress_report(scope, body)
            if report is None:  # FastAPI answers it (a 422 that says what is wrong)
                await self.app(scope, _replay(body, receive), send)
                return
        state = scope["app"].state
        try:
            key = await runner_key(state, token)
            if claim is not None:
                await self._claim(state, key, ids[0], query, receive, send)
            elif report is not None:
                told = await runner_progress(state, ids[0], key, ids[1], report)
                await _answer(send, 200, told.model_dump_json().encode())
            elif beat is not None:
                await _body(receive)  # (these requests carry nothing to keep)
                reply = await runner_heartbeat(state, ids[0], key)
                await _answer(send, 200, reply.model_dump_json().encode())
            else:
                await _body(receive)  # (these requests carry nothing to keep)
                await complete_task(state, ids[0], key, ids[1])
                await _answer(send, 204, b"")
        except Exception as exc:
            response = response_for(exc)
            if response is None:
                raise
            await response(scope, receive, send)

    async def _claim(
        self,
        state: State,
        key: ApiKey,
        runner_id: int,
        query: dict[str, str],
        receive: Receive,
        send: Send,
    ) -> None:
        wait = float(query.get("wait", "30"))
        warm_job = _row_id(query["warm_job"]) if "warm_job" in query else None
        completed = _row_id(query["completed"]) if "completed" in query else None
        await _body(receive)  # (these requests carry nothing to keep)
        gone = asyncio.ensure_future(receive())  # the next message is the client leaving

        async def disconnected() -> bool:
            await asyncio.sleep(0)  # (work on the loop may have kept the message unread)
            return gone.done()

        try:
            task = await long_poll_claim(
                state, runner_id, key, wait, warm_job, disconnected, completed
            )
        finally:
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
        if task is None:
            await _answer(send, 204, b"")
        else:
            await _answer(send, 200, task.model_dump_json().encode())


def _row_id(text: str) -> int | None:
    value = int(text)
    return value if 1 <= value <= MAX_ROW_ID else None


def _row_ids(match: re.Match[str] | None) -> list[int] | None:
    if match is None:
        return None
    ids = [_row_id(group) for group in match.groups()]
    return None if None in ids else ids  # type: ignore[return-value]


def _bearer_token(scope: Scope) -> str | None:
    values = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(values) != 1 or not values[0].startswith(b"Bearer "):
        return None
    token = values[0][7:].decode("latin-1")
    return token if token and " " not in token else None


def _query(scope: Scope) -> dict[str, str] | None:
    """The claim's parameters when each is a plain number given once; else None."""
    try:
        pairs = parse_qsl(scope["query_string"].decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    query = dict(pairs)
    if len(query) != len(pairs):
        return None
    if "wait" in query and not _NUMBER.fullmatch(query["wait"]):
        return None
    for name in ("warm_job", "completed"):
        if name in query and not (
            query[name].isascii()
            and query[name].isdigit()
            and len(query[name]) <= 19
            and _row_id(query[name]) is not None
        ):
            return None
    return query


async def _body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client left first."""
    chunks: list[bytes] = []
    message: Message = {"more_body": True}
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _progress_report(scope: Scope, body: bytes | None) -> TaskProgress | None:
    """The report, when it is the ordinary kind: one JSON content type, a valid body."""
    types = [value for name, value in scope["headers"] if name == b"content-type"]
    if body is None or types != [b"application/json"]:
        return None
    try:
        return TaskProgress.model_validate_json(body)
    except ValueError:  # pydantic's ValidationError
        return None


def _replay(body: bytes | None, receive: Receive) -> Receive:
    """``receive`` for the app behind, the body already read given back first."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed and body is not None:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
