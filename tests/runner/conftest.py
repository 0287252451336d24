"""Fixtures for runner tests that run a whole farm."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.overhead import frame_seconds
from runner.blender import BlenderBackend
from tests.conftest import MakeScene
from tests.runner.farm import RunnerFarm, running_farm

SLOW_FRAME_S = 1.0
"""How long a frame of ``slow_scene`` takes: long enough for a test to act mid-task."""


@pytest.fixture(scope="session")
def slow_samples(
    make_scene: MakeScene, bpy_backend: BlenderBackend, tmp_path_factory: pytest.TempPathFactory
) -> int:
    """Samples for a 64x64 frame of about ``SLOW_FRAME_S`` here, found by rendering one (the
    same samples took 1 s a frame on one machine and 0.07 s on another)."""
    folder = tmp_path_factory.mktemp("slow-probe")
    base = 40
    probe = make_scene(bpy_backend, folder / "probe.blend", frame_end=1, size=64, samples=base)
    took = frame_seconds(bpy_backend, probe, folder / "out", None, folder / "home")
    return max(8, round(base * SLOW_FRAME_S / took))


@pytest.fixture(scope="session")
def slow_scene(
    make_scene: MakeScene,
    bpy_backend: BlenderBackend,
    tmp_path_factory: pytest.TempPathFactory,
    slow_samples: int,
) -> Path:
    """Frames 1-4 at 64x64, each taking about a second on this machine, so a test can act
    while a task is running (saved by bpy 5.0)."""
    path = tmp_path_factory.mktemp("slow-scene") / "slow.blend"
    return make_scene(bpy_backend, path, frame_start=1, frame_end=4, size=64, samples=slow_samples)


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
