"""A scene's own Python runs only when its job type allows it, in real Blender, with both
backends, in a fresh process and in a kept session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest

from runner.blender import BlenderBackend, RenderEvent, check_render
from runner.commands import BadParameters, TaskContext, run_command
from runner.devices import DeviceChoice
from runner.renderer import ProcessRenderer, Renderer, RenderRequest
from runner.session import SessionRenderer
from tests.conftest import MakeScene
from tests.runner.driven_scene import assert_scripts_ran, brightness, make_driven_scene

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module", params=["bpy", "executable"])
def driven(
    request: pytest.FixtureRequest, make_scene: MakeScene, tmp_path_factory: pytest.TempPathFactory
) -> tuple[BlenderBackend, Path]:
    backend: BlenderBackend = request.getfixturevalue(
        "bpy_backend" if request.param == "bpy" else "blender_exe_backend"
    )
    folder = tmp_path_factory.mktemp(f"driven-{request.param}")
    return backend, make_driven_scene(make_scene, backend, folder)


def render_frame(
    renderer: Renderer, scene: Path, output_dir: Path, home: Path, *, allow_scripts: bool
) -> float:
    request = RenderRequest(
        blend_file=scene,
        output_dir=output_dir,
        frames=[1],
        scene=None,
        device=DeviceChoice(),
        threads=1,
        files_dir=scene.parent,
        blender_home=home,
        allow_scripts=allow_scripts,
    )
    events: list[RenderEvent] = []
    result = renderer.render(
        request, on_event=events.append, on_output_line=lambda _: None, stop=threading.Event()
    )
    check_render(result, [1])
    return brightness(result.saved[1])


def test_a_fresh_blender_runs_the_scenes_scripts_only_when_allowed(
    driven: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, scene = driven
    renderer = ProcessRenderer(backend)
    off = render_frame(renderer, scene, tmp_path / "off", blender_home, allow_scripts=False)
    on = render_frame(renderer, scene, tmp_path / "on", blender_home, allow_scripts=True)
    assert_scripts_ran(on, off)


def test_a_session_never_serves_both_kinds_of_request(
    driven: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, scene = driven
    session = SessionRenderer(backend, job_id=1)
    try:
        off = render_frame(session, scene, tmp_path / "off", blender_home, allow_scripts=False)
        assert session.started == 1
        on = render_frame(session, scene, tmp_path / "on", blender_home, allow_scripts=True)
        assert session.started == 2  # the Blender that refused the scripts is not reused
        again = render_frame(session, scene, tmp_path / "again", blender_home, allow_scripts=False)
        assert session.started == 3  # nor the one that ran them
        render_frame(session, scene, tmp_path / "kept", blender_home, allow_scripts=False)
        assert session.started == 3  # a request like the last one keeps its session
    finally:
        session.close()
    assert_scripts_ran(on, off)
    assert_scripts_ran(on, again)


@pytest.mark.parametrize("value", ["false", 0, "no"])
def test_allow_scripts_must_be_true_or_false(value: object) -> None:
    # Refused before anything runs: a string "false" must never read as yes.
    task = {"id": 1, "name": "render-1", "job": {"id": 1}}
    nothing = cast(Any, None)
    ctx = TaskContext(nothing, nothing, task, nothing, threading.Event())
    parameters = {"blend_file": "shot.blend", "frames": [1], "allow_scripts": value}
    with pytest.raises(BadParameters, match="'allow_scripts' must be true or false"):
        run_command(ctx, {"name": "blender-render", "parameters": parameters})
