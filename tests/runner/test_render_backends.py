"""Real renders through run_render with both backends: bpy 5.0 and the Blender 3.4 executable."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from runner.blender import (
    BlenderBackend,
    RenderEvent,
    RenderFailed,
    RenderResult,
    blender_env,
    build_render_argv,
    check_render,
    run_render,
)

pytestmark = pytest.mark.blender

FRAMES = [1, 2, 3, 4]


@dataclass
class FarmRender:
    backend: BlenderBackend
    scene: Path
    output_dir: Path
    result: RenderResult
    events: list[RenderEvent]


@pytest.fixture(scope="module", params=["bpy", "executable"])
def farm_render(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> FarmRender:
    """FRAMES of the backend's own test scene, rendered the way a runner renders them."""
    if request.param == "bpy":
        backend = request.getfixturevalue("bpy_backend")
        scene = request.getfixturevalue("scene_bpy")
    else:
        backend = request.getfixturevalue("blender_exe_backend")
        scene = request.getfixturevalue("scene_blender34")
    work = tmp_path_factory.mktemp(f"farm-render-{request.param}")
    output_dir = work / "out"
    argv = build_render_argv(backend, blend_file=scene, output_dir=output_dir, frames=FRAMES)
    events: list[RenderEvent] = []

    def on_event(event: RenderEvent) -> None:
        if event.name == "saved":  # a runner uploads the file right now: it must be complete
            assert read_exr(Path(event.data["path"]))["R"].shape == (64, 64)
        events.append(event)

    result = run_render(argv, env=blender_env(work / "home"), on_event=on_event)
    return FarmRender(backend, scene, output_dir, result, events)


def read_exr(path: Path) -> dict[str, np.ndarray]:
    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    return {name: channel.pixels for name, channel in channels.items()}


def test_every_frame_is_saved_as_half_float_rgba_exr(farm_render: FarmRender) -> None:
    result = farm_render.result
    check_render(result, FRAMES)
    assert result.errors == []
    assert result.saved == {
        frame: farm_render.output_dir / f"frame_{frame:06d}.exr" for frame in FRAMES
    }
    images = []
    for frame, path in result.saved.items():
        exr = OpenEXR.File(str(path), separate_channels=True)
        header, channels = exr.header(), exr.channels()
        assert sorted(channels) == ["A", "B", "G", "R"]
        assert all(c.type() == OpenEXR.HALF for c in channels.values())
        assert header["compression"] == OpenEXR.ZIP_COMPRESSION
        assert header["Frame"] == str(frame)
        rgb = np.stack([channels[name].pixels for name in "RGB"])
        assert rgb.shape == (3, 64, 64)
        assert rgb.any()
        images.append(rgb)
    assert not np.array_equal(images[0], images[-1])  # the scene moves


def test_events_arrive_in_order(farm_render: FarmRender) -> None:
    names = [(e.name, e.frame) for e in farm_render.events if e.name != "samples"]
    per_frame = [(name, f) for f in FRAMES for name in ("frame_started", "saved", "frame_finished")]
    assert names == [("ready", None), *per_frame, ("done", None)]

    ready = farm_render.events[0].data
    assert ready["blender_version"] == farm_render.backend.version
    assert ready["file"] == str(farm_render.scene)
    assert ready["scene"] == "Scene"
    assert ready["engine"] == "CYCLES"
    assert ready["device"] == "CPU"
    assert ready["frames"] == FRAMES
    assert ready["resolution"] == [64, 64]
    assert farm_render.events[-1].data["frames"] == FRAMES
    for event in farm_render.events:
        if event.name == "frame_finished":
            assert 0 <= event.data["seconds"] < 30


def test_sample_progress(farm_render: FarmRender) -> None:
    samples = [e.data for e in farm_render.events if e.name == "samples"]
    if farm_render.backend.version.startswith("3."):
        assert samples == []  # Blender 3.4 hands render_stats handlers no text
        return
    for frame in FRAMES:
        mine = [(s["sample"], s["samples"]) for s in samples if s["frame"] == frame]
        assert mine, f"no samples events for frame {frame}"
        assert mine[-1] == (4, 4)
        assert [s for s, _ in mine] == sorted({s for s, _ in mine})


def render_reference(backend: BlenderBackend, scene: Path, output_dir: Path, home: Path) -> None:
    """Render FRAMES as an artist would, with the scene's own settings and no framefarm code."""
    pattern = str(output_dir / "frame_######")
    if backend.kind == "executable":
        first, last = str(FRAMES[0]), str(FRAMES[-1])
        argv = [backend.path, "-b", str(scene), "-o", pattern, "-F", "OPEN_EXR"]
        argv += ["-s", first, "-e", last, "-a"]
    else:
        code = (
            "import bpy, sys\n"
            "bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)\n"
            "bpy.context.scene.render.filepath = sys.argv[2]\n"
            "bpy.ops.render.render(animation=True)\n"
        )
        argv = [backend.path, "-c", code, str(scene), pattern]
    done = subprocess.run(
        argv, env=blender_env(home), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_frames_are_pixel_identical_to_an_animation_render(
    farm_render: FarmRender, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    render_reference(farm_render.backend, farm_render.scene, reference, tmp_path / "home")
    for frame in FRAMES:
        expected = read_exr(reference / f"frame_{frame:06d}.exr")
        actual = read_exr(farm_render.result.saved[frame])
        assert sorted(actual) == sorted(expected)
        for name in expected:
            assert actual[name].dtype == expected[name].dtype == np.float16
            assert np.array_equal(actual[name], expected[name]), f"frame {frame} {name}"


@pytest.fixture(params=["bpy", "executable"])
def backend_and_scene(request: pytest.FixtureRequest) -> tuple[BlenderBackend, Path]:
    if request.param == "bpy":
        return request.getfixturevalue("bpy_backend"), request.getfixturevalue("scene_bpy")
    return (
        request.getfixturevalue("blender_exe_backend"),
        request.getfixturevalue("scene_blender34"),
    )


def test_a_missing_blend_file_fails_with_its_name(
    backend_and_scene: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, _ = backend_and_scene
    missing = tmp_path / "no-such-shot.blend"
    argv = build_render_argv(backend, blend_file=missing, output_dir=tmp_path / "out", frames=[1])
    result = run_render(argv, env=blender_env(blender_home))
    assert result.returncode == 1
    with pytest.raises(RenderFailed, match="Blender exited with code 1") as failed:
        check_render(result, [1])
    message = str(failed.value)
    assert str(missing) in message
    assert "frames never saved: 1" in message


def test_an_unknown_scene_is_an_error_event(
    backend_and_scene: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, scene = backend_and_scene
    argv = build_render_argv(
        backend, blend_file=scene, output_dir=tmp_path / "out", frames=[1], scene="NoSuchScene"
    )
    events: list[RenderEvent] = []
    result = run_render(argv, env=blender_env(blender_home), on_event=events.append)
    assert [e.name for e in events] == ["error"]
    assert result.returncode == 1
    assert result.errors == ["no scene named 'NoSuchScene' in the file (scenes: Scene)"]
    with pytest.raises(RenderFailed, match="error: no scene named 'NoSuchScene'"):
        check_render(result, [1])
    assert not (tmp_path / "out").exists()


def test_an_unsupported_device_is_refused(
    bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path, blender_home: Path
) -> None:
    argv = build_render_argv(
        bpy_backend, blend_file=scene_bpy, output_dir=tmp_path / "o", frames=[1], device="CUDA"
    )
    result = run_render(argv, env=blender_env(blender_home))
    assert result.returncode == 2
    assert result.errors == ["device 'CUDA' is not supported; use one of: CPU"]


def test_stop_ends_a_running_render_quickly(
    backend_and_scene: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, scene = backend_and_scene
    frames = list(range(1, 301))  # far more than can render before the stop lands
    argv = build_render_argv(backend, blend_file=scene, output_dir=tmp_path / "o", frames=frames)
    stop = threading.Event()

    def stop_after_first_frame(event: RenderEvent) -> None:
        if event.name == "saved":
            stop.set()

    result = run_render(
        argv, env=blender_env(blender_home), on_event=stop_after_first_frame, stop=stop
    )
    assert result.stopped
    assert result.returncode != 0
    assert 1 <= len(result.saved) < 50
    assert result.seconds < 10
    with pytest.raises(RenderFailed, match="^render stopped before it finished"):
        check_render(result, frames)
