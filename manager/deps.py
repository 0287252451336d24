"""FastAPI dependencies, as ``Annotated`` aliases used by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.datastructures import State

from manager.apikeys import last_use_is_stale, look_up_api_key
from manager.auth.sessions import user_from_session
from manager.errors import Forbidden, Unauthorized
from manager.job_types import JobTypes
from manager.models import ApiKey, User
from manager.settings import ManagerSettings
from manager.signals import WorkSignal
from manager.storage import Storage
from shared.wire import ApiKeyScope

bearer = HTTPBearer(auto_error=False, description="an API key: Authorization: Bearer ff_…")


async def get_settings(request: Request) -> ManagerSettings:
    settings: ManagerSettings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_job_types(request: Request) -> JobTypes:
    job_types: JobTypes = request.app.state.job_types
    return job_types


async def get_work_signal(request: Request) -> WorkSignal:
    signal: WorkSignal = request.app.state.work_signal
    return signal


WRITE_ENGINE = "framefarm_write_engine"
RUNNER_API = "/api/runner/"


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request (made on the event loop: making one does no I/O).

    Requests that change state take SQLite's write lock up front (``BEGIN IMMEDIATE``), so
    that reading and then writing in one transaction never fails on a stale snapshot, but
    only once the caller is known: authentication reads without the lock, and
    ``begin_writes`` switches the session to the write engine for the endpoint's work.
    """
    state = request.app.state
    writes = request.method not in ("GET", "HEAD")
    # Runner keys are checked without this session (``get_runner_key``): nothing to wait for.
    bind = state.write_engine if writes and request.url.path.startswith(RUNNER_API) else None
    with Session(bind or state.engine, expire_on_commit=False) as session:
        if writes and bind is None:
            session.info[WRITE_ENGINE] = state.write_engine
        yield session


SettingsDep = Annotated[ManagerSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StorageDep = Annotated[Storage, Depends(get_storage)]
WorkSignalDep = Annotated[WorkSignal, Depends(get_work_signal)]
JobTypesDep = Annotated[JobTypes, Depends(get_job_types)]
SessionDep = Annotated[Session, Depends(get_session)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _missing_key() -> Unauthorized:
    return Unauthorized(
        "no API key given; send 'Authorization: Bearer ff_…' (create a key with "
        "'framefarm manager config add apikey'), or sign in with POST /api/auth/login",
        code="missing_api_key",
    )


def _invalid_key() -> Unauthorized:
    return Unauthorized(
        "the API key is unknown or revoked; check the key or create a new one",
        code="invalid_api_key",
    )


def _api_key(request: Request, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
    """The caller's key, through the app's key cache; its last use is written down (at most
    once a minute) in a write transaction of its own, queued like every other writer."""
    if credentials is None:
        raise _missing_key()
    state = request.app.state
    record = look_up_api_key(
        state.engine, state.write_engine, credentials.credentials, state.api_key_cache
    )
    if record is None:
        raise _invalid_key()
    return record


def begin_writes(session: Session) -> None:
    """Finish the request's reads (authentication's, say); from here on it writes.

    On SQLite the next transaction takes the write lock up front, so a write after a read
    waits for other writers instead of failing on a stale snapshot. Endpoints without a
    signed-in caller (signing in, registering) call it themselves before they write.
    """
    session.commit()
    if WRITE_ENGINE in session.info:
        session.bind = session.info[WRITE_ENGINE]


async def get_runner_key(request: Request, credentials: Credentials) -> ApiKey:
    if credentials is None:
        raise _missing_key()
    return await runner_key(request.app.state, credentials.credentials)


async def runner_key(state: State, key: str) -> ApiKey:
    """The runner key, from the app's key cache when it is there (runners call often).

    A key revoked through this manager stops working at once; one revoked by another
    process within ``KEY_CACHE_SECONDS``.
    """
    record: ApiKey | None = state.api_key_cache.get(key)
    if record is None or last_use_is_stale(record):
        record = await run_in_threadpool(
            look_up_api_key, state.engine, state.write_engine, key, state.api_key_cache
        )
    if record is None:
        raise _invalid_key()
    if record.scope != ApiKeyScope.RUNNER:
        raise Forbidden("this endpoint takes a runner API key", code="wrong_key_scope")
    return record


def get_current_user(request: Request, session: SessionDep, credentials: Credentials) -> User:
    """The user of a user API key, or of the session cookie (which must carry CSRF to change)."""
    if credentials is None:
        user = user_from_session(request, session)
        if user is not None:
            begin_writes(session)
            return user
    record = _api_key(request, credentials)
    if record.scope != ApiKeyScope.USER or record.user_id is None:
        raise Forbidden(
            "this endpoint takes a user API key, not a runner key", code="wrong_key_scope"
        )
    user = session.get(User, record.user_id)
    begin_writes(session)
    if user is None:
        raise Unauthorized("the user of this API key no longer exists", code="invalid_api_key")
    return user


RunnerKeyDep = Annotated[ApiKey, Depends(get_runner_key)]
CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("only admins may do this; ask one of them", code="admin_only")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
