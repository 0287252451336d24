"""Real renders through run_render with both backends: bpy 5.0 and the Blender 3.4 executable."""

from __future__ import annotations

import subprocess
import threading
import time
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
    build_script_argv,
    check_render,
    run_render,
)

pytestmark = pytest.mark.blender

FRAMES = [1, 2, 3, 4]
RENDER_ORDER = [3, 1, 4, 2]  # out of order: no frame may depend on the one rendered before


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
    argv = build_render_argv(
        backend, blend_file=scene, output_dir=output_dir, frames=RENDER_ORDER, threads=1
    )
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
    check_render(result, RENDER_ORDER)
    assert result.errors == []
    assert result.saved == {
        frame: farm_render.output_dir / f"frame_{frame:06d}.exr" for frame in FRAMES
    }
    images = []
    for frame, path in sorted(result.saved.items()):
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
    steps = ("frame_started", "saved", "frame_finished")
    per_frame = [(name, f) for f in RENDER_ORDER for name in steps]
    assert names == [("ready", None), *per_frame, ("done", None)]

    ready = farm_render.events[0].data
    assert ready["blender_version"] == farm_render.backend.version
    assert ready["file"] == str(farm_render.scene)
    assert ready["scene"] == "Scene"
    assert ready["engine"] == "CYCLES"
    assert ready["device"] == "CPU"
    assert ready["frames"] == RENDER_ORDER
    assert ready["resolution"] == [64, 64]
    assert farm_render.events[-1].data["frames"] == RENDER_ORDER
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


def render_reference(
    backend: BlenderBackend,
    scene: Path,
    output_dir: Path,
    home: Path,
    scene_name: str | None = None,
    frames: list[int] = FRAMES,
) -> None:
    """Render frames as an artist would, with the scene's own settings and no framefarm code."""
    pattern = str(output_dir / "frame_######")
    first, last = str(frames[0]), str(frames[-1])
    if backend.kind == "executable":
        argv = [backend.path, "-b", str(scene)]
        argv += [] if scene_name is None else ["-S", scene_name]
        argv += ["-o", pattern, "-F", "OPEN_EXR", "-s", first, "-e", last, "-a"]
    else:
        code = (
            "import bpy, sys\n"
            "path, pattern, first, last, name = sys.argv[1:]\n"
            "bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)\n"
            "if name:\n"
            "    bpy.context.window.scene = bpy.data.scenes[name]\n"
            "scene = bpy.context.scene\n"
            "scene.render.filepath = pattern\n"
            "scene.frame_start, scene.frame_end = int(first), int(last)\n"
            "bpy.ops.render.render(animation=True)\n"
        )
        argv = [backend.path, "-c", code, str(scene), pattern, first, last, scene_name or ""]
    done = subprocess.run(
        argv, env=blender_env(home), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def assert_same_pixels(actual_path: Path, expected_path: Path) -> None:
    expected, actual = read_exr(expected_path), read_exr(actual_path)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name].dtype == expected[name].dtype == np.float16
        assert np.array_equal(actual[name], expected[name]), f"{actual_path.name} {name}"


def test_frames_are_pixel_identical_to_an_animation_render(
    farm_render: FarmRender, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    render_reference(farm_render.backend, farm_render.scene, reference, tmp_path / "home")
    for frame in FRAMES:
        assert_same_pixels(farm_render.result.saved[frame], reference / f"frame_{frame:06d}.exr")


@pytest.fixture(params=["bpy", "executable"])
def backend_and_scene(request: pytest.FixtureRequest) -> tuple[BlenderBackend, Path]:
    if request.param == "bpy":
        return request.getfixturevalue("bpy_backend"), request.getfixturevalue("scene_bpy")
    return (
        request.getfixturevalue("blender_exe_backend"),
        request.getfixturevalue("scene_blender34"),
    )


ADD_SHOT2 = """
import sys, bpy
args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
if args[0] == "--blend":
    bpy.ops.wm.open_mainfile(filepath=args[1], load_ui=False, use_scripts=False)
    args = args[2:]
main = bpy.context.scene
bpy.ops.scene.new(type="FULL_COPY")
shot = bpy.context.scene
shot.name = "Shot2"
shot.render.resolution_x, shot.render.resolution_y = 32, 16
bpy.context.window.scene = main
bpy.ops.wm.save_as_mainfile(filepath=args[0])
"""


def test_a_scene_other_than_the_active_one(
    backend_and_scene: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, scene = backend_and_scene
    script, two_scenes = tmp_path / "add_shot2.py", tmp_path / "two-scenes.blend"
    script.write_text(ADD_SHOT2)
    argv = build_script_argv(backend, script, [str(two_scenes)], blend_file=scene)
    env = blender_env(blender_home)
    subprocess.run(argv, env=env, capture_output=True, timeout=120, check=True)

    frames = [4, 1]
    argv = build_render_argv(
        backend, blend_file=two_scenes, output_dir=tmp_path / "o", frames=frames, scene="Shot2"
    )
    events: list[RenderEvent] = []
    result = run_render(argv, env=env, on_event=events.append)
    check_render(result, frames)
    assert events[0].data["scene"] == "Shot2"
    assert events[0].data["resolution"] == [32, 16]
    for frame in frames:
        header = OpenEXR.File(str(result.saved[frame])).header()
        assert (header["Scene"], header["Frame"]) == ("Shot2", str(frame))
    reference = tmp_path / "reference"
    render_reference(backend, two_scenes, reference, blender_home, "Shot2", [1, 4])
    for frame in frames:
        assert_same_pixels(result.saved[frame], reference / f"frame_{frame:06d}.exr")


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


def test_a_failing_render_is_an_error_event(
    blender_exe_backend: BlenderBackend, scene_blender34: Path, tmp_path: Path, blender_home: Path
) -> None:
    # Debian's Blender 3.4 is built without OpenImageDenoise: denoising makes renders fail.
    denoised = tmp_path / "denoised.blend"
    code = "import bpy, sys; bpy.context.scene.cycles.use_denoising = True; "
    code += "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])"
    argv = [blender_exe_backend.path, "-b", "--factory-startup", str(scene_blender34)]
    argv += ["--python-exit-code", "1", "--python-expr", code, "--", str(denoised)]
    env = blender_env(blender_home)
    subprocess.run(argv, env=env, capture_output=True, timeout=120, check=True)

    argv = build_render_argv(
        blender_exe_backend, blend_file=denoised, output_dir=tmp_path / "o", frames=[1, 2]
    )
    events: list[RenderEvent] = []
    result = run_render(argv, env=env, on_event=events.append)
    assert [e.name for e in events] == ["ready", "frame_started", "error"]
    assert result.returncode == 1
    assert result.errors == ["frame 1 failed to render: Error: Build without OpenImageDenoiser"]
    assert "Error: Build without OpenImageDenoiser" in result.last_lines
    with pytest.raises(RenderFailed, match="frames never saved: 1, 2; last output:\n"):
        check_render(result, [1, 2])


def test_an_unknown_device_is_refused(
    bpy_backend: BlenderBackend, scene_bpy: Path, tmp_path: Path, blender_home: Path
) -> None:
    argv = build_render_argv(
        bpy_backend, blend_file=scene_bpy, output_dir=tmp_path / "o", frames=[1], device="TPU"
    )
    result = run_render(argv, env=blender_env(blender_home))
    assert result.returncode == 2
    assert result.errors == [
        "device 'TPU' is not supported; use one of: CPU, OPTIX, CUDA, HIP, ONEAPI, METAL"
    ]


def test_a_gpu_that_is_not_there_fails_instead_of_rendering_on_the_cpu(
    backend_and_scene: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    # No GPU here: Cycles would quietly render on the CPU; render.py must refuse instead.
    backend, scene = backend_and_scene
    argv = build_render_argv(
        backend, blend_file=scene, output_dir=tmp_path / "o", frames=[1], device="CUDA"
    )
    result = run_render(argv, env=blender_env(blender_home))
    assert result.returncode == 2
    assert result.saved == {}
    assert result.errors == [
        "CUDA was requested but Blender found no CUDA device (it would silently render on "
        "the CPU); check the GPU driver or render on the CPU"
    ]


def test_stop_ends_a_running_render_quickly(
    backend_and_scene: tuple[BlenderBackend, Path], tmp_path: Path, blender_home: Path
) -> None:
    backend, scene = backend_and_scene
    frames = list(range(1, 301))  # far more than can render before the stop lands
    argv = build_render_argv(backend, blend_file=scene, output_dir=tmp_path / "o", frames=frames)
    stop = threading.Event()
    stopped_at: list[float] = []

    def stop_after_first_frame(event: RenderEvent) -> None:
        if event.name == "saved" and not stop.is_set():
            stopped_at.append(time.monotonic())
            stop.set()

    result = run_render(
        argv, env=blender_env(blender_home), on_event=stop_after_first_frame, stop=stop
    )
    assert result.stopped
    assert result.returncode != 0
    assert 1 <= len(result.saved) < 50
    # Measured from the stop, not from Blender's start-up, which a busy machine slows down.
    assert time.monotonic() - stopped_at[0] < 4  # SIGTERM sufficed: SIGKILL comes at 5 s
    with pytest.raises(RenderFailed, match="^render stopped before it finished"):
        check_render(result, frames)
