"""Fixtures for runner tests that run a whole farm."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.blender import BlenderBackend
from tests.conftest import MakeScene
from tests.runner.farm import RunnerFarm, running_farm

SLOW_SAMPLES = 40


@pytest.fixture(scope="session")
def slow_scene(
    make_scene: MakeScene, bpy_backend: BlenderBackend, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Frames 1-4 at 64x64 with enough samples to take about a second each on 2 cores, so a
    test can act while a task is running (saved by bpy 5.0)."""
    path = tmp_path_factory.mktemp("slow-scene") / "slow.blend"
    return make_scene(bpy_backend, path, frame_start=1, frame_end=4, size=64, samples=SLOW_SAMPLES)


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[RunnerFarm]:
    with running_farm(tmp_path) as farm:
        yield farm


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The runner sets up the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
