"""Shared fixtures. Each part of the farm keeps its fixtures in its own section below."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from blender_scripts import SCRIPTS_DIR
from runner.blender import (
    BlenderBackend,
    blender_env,
    build_script_argv,
    detect_backend,
    parse_event_line,
)

# ---------------------------------------------------------------------------------------
# Blender: backends, a throwaway $HOME, and small animated test scenes
# ---------------------------------------------------------------------------------------

MakeScene = Callable[..., Path]


@pytest.fixture
def blender_home(tmp_path: Path) -> Path:
    """A fresh folder for Blender's $HOME, so it never writes into the real one."""
    home = tmp_path / "blender-home"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def bpy_backend() -> BlenderBackend:
    """The bpy module of this interpreter (PyPI bpy 5.0.1); it must be installed."""
    if importlib.util.find_spec("bpy") is None:
        pytest.fail(f"bpy is not installed in {sys.executable}: pip install bpy==5.0.1")
    backend = detect_backend(sys.executable)
    assert backend.kind == "bpy"
    return backend


@pytest.fixture(scope="session")
def blender_exe_backend() -> BlenderBackend:
    """The `blender` executable on PATH (Debian's 3.4); it must be installed."""
    blender = shutil.which("blender")
    if blender is None:
        pytest.fail("no `blender` on PATH: apt install blender")
    backend = detect_backend(blender)
    assert backend.kind == "executable"
    return backend


@pytest.fixture(scope="session")
def make_scene(tmp_path_factory: pytest.TempPathFactory) -> MakeScene:
    """``make_scene(backend, path, frame_end=6, transparent=True, …)`` runs make_scene.py."""
    home = tmp_path_factory.mktemp("make-scene-home")

    def make(backend: BlenderBackend, path: Path, **options: object) -> Path:
        args = ["--output", str(path)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is not False and value is not None:
                args += [flag, str(value)]
        argv = build_script_argv(backend, SCRIPTS_DIR / "make_scene.py", args)
        done = subprocess.run(
            argv,
            env=blender_env(home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        events = [parse_event_line(line) for line in done.stdout.splitlines()]
        saved = [e for e in events if e is not None and e.name == "scene_saved"]
        if done.returncode != 0 or not saved or not Path(path).is_file():
            pytest.fail(
                f"make_scene.py failed with {backend.label} (exit {done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return Path(saved[0].data["path"])

    return make


@pytest.fixture(scope="session")
def scene_bpy(
    make_scene: MakeScene, bpy_backend: BlenderBackend, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 64x64, 4-sample animated scene, frames 1-4, saved by bpy 5.0 (3.4 cannot open it)."""
    path = tmp_path_factory.mktemp("scene-bpy") / "scene.blend"
    return make_scene(bpy_backend, path, frame_start=1, frame_end=4, size=64, samples=4)


@pytest.fixture(scope="session")
def scene_blender34(
    make_scene: MakeScene,
    blender_exe_backend: BlenderBackend,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The same scene saved by the Blender executable (3.4), which every later version opens."""
    path = tmp_path_factory.mktemp("scene-blender34") / "scene.blend"
    return make_scene(blender_exe_backend, path, frame_start=1, frame_end=4, size=64, samples=4)


# ---------------------------------------------------------------------------------------
# Databases: every manager test runs on SQLite and on a real PostgreSQL server
# ---------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get(
    "FRAMEFARM_TEST_POSTGRES_URL",
    "postgresql+psycopg://framefarm_test:framefarm_test@127.0.0.1:5432/postgres",
)


def _postgres_admin_engine() -> Engine:
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc.orig}); "
            "`make postgres` starts it and creates the test role (`make test` does this)"
        )
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'framefarm.db'}"
        return
    admin = _postgres_admin_engine()
    name = f"framefarm_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)
        admin.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    # An autovacuum worker in the database (a superuser's process, which the test role may
    # not end) makes FORCE fail for a moment: it finishes its table and leaves.
    for attempt in range(50):
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except ProgrammingError:
            if attempt == 49:
                raise
            time.sleep(0.2)
