"""The manager's FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from manager import __version__
from manager.apikeys import ApiKeyCache
from manager.auth import install_auth
from manager.db import BEGIN_MODE, is_sqlite, make_engine, migrate, session_scope
from manager.errors import install_error_handlers
from manager.fast_lane import RunnerFastLane
from manager.hot_lane import HotLane
from manager.job_types import JobTypes
from manager.logs import configure_logging
from manager.metrics import FarmMetrics
from manager.routers import (
    admin,
    auth,
    blender_versions,
    blobs,
    health,
    job_types,
    jobs,
    metrics,
    runner_api,
)
from manager.settings import ManagerSettings
from manager.signals import WorkSignal
from manager.storage import Storage
from manager.sweeper import sweep
from manager.web import install_web
from manager.work_relay import PostgresWorkRelay, libpq_conninfo

log = logging.getLogger(__name__)
WORKER_THREADS = 8


def create_app(settings: ManagerSettings | None = None) -> FastAPI:
    """Build the app; the database is migrated and storage created when it starts."""
    settings = settings or ManagerSettings()
    engine = make_engine(settings.database_url, echo=settings.verbose)
    storage = Storage(settings.storage)
    signal = WorkSignal()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(migrate, engine)
        storage.create_folders()
        signal.bind(asyncio.get_running_loop())
        # Few threads: every request's Python work shares one interpreter lock, and with many
        # threads a request holding SQLite's write lock gets its turn too seldom while page
        # renders run, so every other writer waits behind it.
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        app.state.hot_lane = HotLane(engine, app.state.write_engine)
        relay = None
        if engine.dialect.name == "postgresql":  # other managers may share the database
            relay = PostgresWorkRelay(libpq_conninfo(engine.url), signal.notify_here)
            signal.publish = relay.publish
            relay.start()
        app.state.work_relay = relay
        sweeper = asyncio.create_task(_sweep_forever(app))
        log.info(
            "manager ready: database %s, storage %s",
            engine.url.render_as_string(hide_password=True),
            storage.root,
        )
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if relay is not None:
                signal.publish = None
                await run_in_threadpool(relay.stop)
            app.state.hot_lane.close()
            engine.dispose()

    app = FastAPI(
        title="framefarm manager",
        version=__version__,
        description="Jobs, tasks, runners and files of a Blender render farm.",
        lifespan=lifespan,
        # The farm exports Prometheus metrics itself (/metrics); FastAPI's OpenTelemetry
        # hooks would otherwise look for a tracer on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.write_engine = (
        engine.execution_options(**{BEGIN_MODE: "IMMEDIATE"}) if is_sqlite(engine) else engine
    )
    app.state.storage = storage
    app.state.api_key_cache = ApiKeyCache()
    app.state.work_signal = signal
    app.state.metrics = FarmMetrics(engine)
    app.state.job_types = JobTypes(settings.job_types_dir)
    install_error_handlers(app)
    app.add_middleware(RunnerFastLane)
    install_auth(app, settings)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(job_types.router)
    app.include_router(blobs.router)
    app.include_router(runner_api.router)
    app.include_router(blender_versions.router)
    app.include_router(metrics.router)
    app.include_router(auth.router)
    app.include_router(admin.router)
    install_web(app)
    return app


def create_worker_app() -> FastAPI:
    """One of several manager processes (``--workers``), its settings from the environment."""
    settings = ManagerSettings()
    configure_logging(settings.log_level, settings.log_file, settings.verbose)
    return create_app(settings)


async def _sweep_forever(app: FastAPI) -> None:
    """Requeue the tasks of runners that stopped heartbeating."""
    settings: ManagerSettings = app.state.settings
    interval = max(0.5, min(settings.runner_timeout / 3, 5.0))
    while True:
        await asyncio.sleep(interval)
        try:
            requeued = await run_in_threadpool(_sweep_once, app)
        except Exception:
            log.exception("sweeping for offline runners failed; will try again")
            continue
        if requeued:
            log.warning("requeued tasks %s of runners that went silent", requeued)
            app.state.work_signal.notify(len(requeued))


def _sweep_once(app: FastAPI) -> list[int]:
    with session_scope(app.state.write_engine) as session:
        return sweep(session, runner_timeout=app.state.settings.runner_timeout)
