"""Who may call what: every route of the app, as five callers, against one explicit rule table.

The routes come from the app's own route table, so a route added later is called here too;
a route that no rule describes fails the test until someone decides who may use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session, select
from starlette.testclient import WebSocketDenialResponse

from manager.apikeys import create_api_key, hash_key
from manager.db import session_scope
from manager.models import ApiKey, Output, Runner, utcnow
from manager.users import create_user, get_user_by_email
from shared.wire import ApiKeyScope, JobStatus, TaskStatus
from tests.manager.auth_helpers import engine_of
from tests.manager.conftest import Farm
from tests.manager.factories import make_job

PUBLIC, RUNNER, ADMIN, USER, OWNER = "public", "runner only", "admin only", "users", "job owner"
PAGE, OWNER_PAGE, ADMIN_PAGE = "page", "job owner's page", "admin page"

# First match wins; paths as the route table writes them. A route matching none fails.
RULES: list[tuple[str, str]] = [
    (r"/healthz", PUBLIC),
    (r"/metrics", PUBLIC),  # Prometheus scrapes without credentials
    (r"/api/version", PUBLIC),
    (r"/openapi\.json", PUBLIC),
    (r"/(docs|redoc)(/oauth2-redirect)?", PUBLIC),
    (r"/api/auth/(login|register|providers)", PUBLIC),
    (r"/api/auth/\{provider\}/(login|callback)", PUBLIC),
    (r"/api/runner/.*", RUNNER),
    (r"/api/admin/.*", ADMIN),
    (r"/api/jobs/\{job_id\}(/.*)?", OWNER),
    (r"/api/jobs(/bulk|/manifest|/ws)?", USER),
    (r"/api/job-types(/\{name\})?", USER),
    (r"/api/blender/versions", USER),  # runners list and fetch builds under /api/runner
    (r"/api/blobs/(missing|\{sha256\})", USER),
    (r"/api/auth/(me|logout|password/change|keys|keys/\{key_id\})", USER),
    # the web page: signed-out browsers are sent to /signin instead of getting a 401
    (r"/|/signin(/register)?|/static/\{name\}", PUBLIC),
    (r"/jobs/\{job_id\}(/.*)?", OWNER_PAGE),
    (r"/jobs(/rows|/bulk|/new|/new/inspect)?|/runners(/rows)?", PAGE),
    (r"/runners/\{runner_id\}/(enable|disable|tags)|/admin(/.*)?", ADMIN_PAGE),
]

ALLOWED = "allowed"
SIGN_IN = "303 to /signin"
WEBSOCKET = "WEBSOCKET"
CALLERS = ("anonymous", "user A", "user B", "admin", "runner key")
EXPECTED: dict[str, dict[str, object]] = {
    PUBLIC: dict.fromkeys(CALLERS, ALLOWED),
    RUNNER: {
        "anonymous": 401,
        "user A": 403,
        "user B": 403,
        "admin": 403,
        "runner key": ALLOWED,
    },
    ADMIN: {"anonymous": 401, "user A": 403, "user B": 403, "admin": ALLOWED, "runner key": 403},
    USER: {
        "anonymous": 401,
        "user A": ALLOWED,
        "user B": ALLOWED,
        "admin": ALLOWED,
        "runner key": 403,
    },
    OWNER: {
        "anonymous": 401,
        "user A": ALLOWED,
        "user B": (404, "job_not_found"),  # someone else's job does not exist for them
        "admin": ALLOWED,
        "runner key": 403,
    },
    PAGE: {
        "anonymous": SIGN_IN,
        "user A": ALLOWED,
        "user B": ALLOWED,
        "admin": ALLOWED,
        "runner key": 403,
    },
    OWNER_PAGE: {
        "anonymous": SIGN_IN,
        "user A": ALLOWED,
        "user B": (404, "job_not_found"),
        "admin": ALLOWED,
        "runner key": 403,
    },
    ADMIN_PAGE: {
        "anonymous": SIGN_IN,
        "user A": 403,
        "user B": 403,
        "admin": ALLOWED,
        "runner key": 403,
    },
}

# Request bodies that get a request past validation to the part that checks ownership.
BODIES: dict[tuple[str, str], object] = {
    ("POST", "/api/jobs/bulk"): {"action": "pause", "job_ids": ["{job_id}"]},
}
# The same for the pages, which take forms.
FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/jobs/{job_id}/priority"): {"priority": "60"},
}


@dataclass
class World:
    """Fresh things for one call to act on, so no call depends on what another did."""

    params: dict[str, str]


def app_routes(app: FastAPI) -> Iterator[tuple[str, str, str]]:
    """(method, path, kind) of every route; FastAPI may keep included routers nested."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    for route in flatten(app.routes) if flatten else app.routes:
        methods = getattr(route, "methods", None)
        kind = type(getattr(route, "original_route", route)).__name__
        if kind == "APIWebSocketRoute":
            yield WEBSOCKET, route.path, kind
            continue
        if not methods:
            yield "", route.path, kind  # a mount: the matrix cannot call it
            continue
        for method in sorted(methods - {"HEAD"} if methods != {"HEAD"} else methods):
            yield method, route.path, kind


def rule_for(path: str) -> str | None:
    return next((rule for pattern, rule in RULES if re.fullmatch(pattern, path)), None)


def make_world(farm: Farm, serial: int) -> World:
    with session_scope(engine_of(farm)) as session:
        artist = get_user_by_email(session, "artist@example.com")
        job, tasks = make_job(session, tasks=2, name=f"matrix {serial}")
        job.owner_id = artist.id
        session.add(job)
        assert job.id is not None
        session.add(
            Output(job_id=job.id, name="frame_000001.exr", frame=1, size=3, sha256="0" * 64)
        )
        runner_key = session.exec(
            select(ApiKey).where(ApiKey.key_hash == hash_key(farm.runner_key))
        ).one()
        runner = Runner(
            name=f"node-{serial}",
            api_key_id=runner_key.id,
            task_types=["blender"],
            last_seen_at=utcnow(),
        )
        session.add(runner)
        session.flush()
        # the runner works on the job's second task, so it may read the job's outputs
        tasks[1].status, tasks[1].runner_id = TaskStatus.ACTIVE, runner.id
        tasks[1].lease_expires_at = utcnow() + timedelta(minutes=5)
        session.add(tasks[1])
        job.status = JobStatus.ACTIVE
        session.add(job)
        victim = create_user(session, email=f"victim-{serial}@example.com")
        spare = create_api_key(session, name="spare", scope=ApiKeyScope.USER, user=artist).record
        session.flush()
        return World(
            params={
                "job_id": str(job.id),
                "task_id": str(tasks[0].id),
                "runner_id": str(runner.id),
                "name": "frame_000001.exr",
                "sha256": "0" * 64,
                "provider": "nobody",
                "user_id": str(victim.id),
                "key_id": str(spare.id),
                "action": "pause",
            }
        )


def fill(template: object, params: dict[str, str]) -> object:
    if isinstance(template, str):
        filled = template.format(**params)
        return int(filled) if filled.isdigit() and template != filled else filled
    if isinstance(template, list):
        return [fill(item, params) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, params) for key, value in template.items()}
    return template


def call(farm: Farm, method: str, path: str, caller: str, world: World):  # type: ignore[no-untyped-def]
    names = re.findall(r"\{(\w+)(?::\w+)?\}", path)
    missing = [name for name in names if name not in world.params]
    if missing:
        pytest.fail(f"the matrix has no value for {missing} in {path}; add one to make_world")
    url = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: world.params[m.group(1)], path)
    keys = {
        "user A": farm.user_key,
        "user B": farm.other_user_key,
        "admin": farm.admin_key,
        "runner key": farm.runner_key,
    }
    headers = farm.auth(keys[caller]) if caller in keys else {}
    if method == WEBSOCKET:
        return connect(farm, url, headers)
    body = fill(BODIES.get((method, path), {}), world.params)
    form = FORMS.get((method, path))
    return farm.client.request(
        method,
        url,
        headers=headers,
        params={"wait": "0"},  # long polls answer at once
        json=body if method in ("POST", "PUT", "PATCH", "DELETE") and form is None else None,
        data=form,
        follow_redirects=False,
    )


def connect(farm: Farm, url: str, headers: dict[str, str]) -> httpx.Response:
    """A WebSocket handshake: 101 once the first message came, else the refusal it got."""
    try:
        with farm.client.websocket_connect(url, headers=headers) as socket:
            socket.receive_json()
    except WebSocketDenialResponse as refusal:
        return refusal
    return httpx.Response(101)


def verdict(response) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    code = ""
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        code = body.get("code", "") if isinstance(body, dict) else ""
    return response.status_code, code


def matches(expected: object, status: int, code: str, location: str = "") -> bool:
    if expected == SIGN_IN:
        return status == 303 and location.startswith("/signin?next=")
    if expected == ALLOWED:
        denied = status in (401, 403) or (status == 404 and code == "job_not_found")
        return not denied and status < 500
    if isinstance(expected, tuple):
        return (status, code) == expected
    return status == expected


def test_every_route_answers_each_caller_as_the_rules_say(farm: Farm):
    routes = list(app_routes(farm.client.app))  # type: ignore[arg-type]
    assert len(routes) >= 40, routes
    unruled = [f"{method} {path} ({kind})" for method, path, kind in routes if not rule_for(path)]
    assert not unruled, f"routes no rule describes; add them to RULES: {unruled}"
    uncallable = [f"{path} ({kind})" for method, path, kind in routes if not method]
    assert not uncallable, f"routes the matrix cannot call; teach it: {uncallable}"
    used = {rule_for(path) for _, path, _ in routes}
    assert used == set(EXPECTED), f"rules no route uses: {set(EXPECTED) - used}"

    wrong = []
    serial = 0
    for method, path, _ in routes:
        rule = rule_for(path)
        assert rule is not None
        for caller in CALLERS:
            serial += 1
            response = call(farm, method, path, caller, make_world(farm, serial))
            status, code = verdict(response)
            expected = EXPECTED[rule][caller]
            if not matches(expected, status, code, response.headers.get("location", "")):
                wrong.append(
                    f"{method} {path} [{rule}] as {caller}: expected {expected}, "
                    f"got {status} {code} {response.text[:120]!r}"
                )
    assert not wrong, "\n".join(wrong)


def test_bulk_actions_reach_only_the_callers_jobs(farm: Farm):
    world = make_world(farm, 0)
    body = {"action": "pause", "job_ids": [int(world.params["job_id"])]}
    theirs = farm.client.post("/api/jobs/bulk", json=body, headers=farm.auth(farm.other_user_key))
    assert theirs.json()["results"][0] | {"message": ""} == {
        "job_id": int(world.params["job_id"]),
        "ok": False,
        "code": "job_not_found",
        "message": "",
    }
    mine = farm.client.post("/api/jobs/bulk", json=body, headers=farm.auth(farm.user_key))
    assert mine.json()["results"][0]["ok"] is True
    with Session(engine_of(farm)) as session:
        assert session.exec(select(Runner)).first() is not None
