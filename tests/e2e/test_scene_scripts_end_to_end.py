"""On a real farm, a scene's Python driver runs only under a job type that allows scripts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framefarm.submit import download_outputs, submit_blend, wait_for_job
from runner.blender import BlenderBackend
from tests.conftest import MakeScene
from tests.e2e.conftest import LiveFarm
from tests.runner.driven_scene import assert_scripts_ran, brightness, make_driven_scene

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def readme_allowing_job_type() -> str:
    """The README's example of a job type that allows scripts, so the docs run as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Letting a scene's scripts run", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: 'Letting a scene's scripts run' lost its python example"
    return match.group(1)


def test_only_a_job_type_that_allows_scripts_renders_the_driver(
    live_farm: LiveFarm, bpy_backend: BlenderBackend, make_scene: MakeScene, tmp_path: Path
) -> None:
    scene = make_driven_scene(make_scene, bpy_backend, tmp_path / "scene")
    (live_farm.job_types_dir / "rigged_render.py").write_text(readme_allowing_job_type())
    live_farm.start_runner(bpy_backend, "node-1")
    mean = {}
    with live_farm.client() as client:
        plain = submit_blend(client, scene, frames="1")  # the built-in simple-blender-render
        rigged = submit_blend(client, scene, frames="1", job_type="rigged-render")
        for kind, job in (("plain", plain), ("rigged", rigged)):
            status = wait_for_job(client, job["id"], timeout=180, poll=0.2)
            assert status["status"] == "completed", live_farm.logs()
            (frame,) = download_outputs(client, job["id"], tmp_path / kind)
            mean[kind] = brightness(frame)
    assert_scripts_ran(mean["rigged"], mean["plain"])
    log = (live_farm.root / "runner-node-1.log").read_text()
    assert log.count("its job type lets the scene's Python scripts run") == 1, log
