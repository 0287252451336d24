"""Add-on fixtures: the live farm of the end-to-end tests, and a textured project on disk."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.blender import blender_env
from tests.e2e.conftest import LiveFarm, live_farm, run_live_farm

__all__ = ["live_farm", "shared_farm", "textured_project"]

HERE = Path(__file__).resolve().parent


def build_textured_project(root: Path, *options: str) -> Path:
    """Run textured_scene.py in Blender 3.4, whose .blend files are not compressed (5.0
    compresses them with zstd), so ``textured_project`` can append bytes after the last block.
    """
    script = str(HERE / "textured_scene.py")
    done = subprocess.run(
        ["blender", "-b", "--factory-startup", "--python-exit-code", "1", "-P", script]
        + ["--", str(root), "1,0,0", *options],
        env=blender_env(root.parent / "home"),
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def textured_project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """project/{shots/shot.blend, textures/paint.png, library/props.blend}, made once."""
    return build_textured_project(tmp_path_factory.mktemp("textured") / "project")


@pytest.fixture
def textured_project(textured_project_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the textured project, each file made unique for a shared manager.

    Blender and blender-asset-tracer stop reading a .blend at its ENDB block and PNG readers
    at IEND, so the bytes added after them change the hashes and nothing else.
    """
    project = Path(shutil.copytree(textured_project_template, tmp_path / "project"))
    for path in project.rglob("*.*"):
        with open(path, "ab") as f:
            f.write(uuid.uuid4().bytes)
    return project


@pytest.fixture(scope="module")
def shared_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFarm]:
    """One manager for a module's tests that need no runner (starting one takes seconds)."""
    with run_live_farm(tmp_path_factory.mktemp("farm")) as farm:
        yield farm
