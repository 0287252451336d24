"""Blender command lines, environments and backend detection."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

from blender_scripts import SCRIPTS_DIR
from runner.blender import (
    BlenderBackend,
    BlenderNotFound,
    blender_env,
    build_render_argv,
    build_script_argv,
    detect_backend,
    find_backends,
)
from runner.devices import DeviceChoice
from runner.renderer import RenderRequest
from runner.session_process import build_session_argv, session_key

RENDER = str(SCRIPTS_DIR / "render.py")
EXE = BlenderBackend("executable", "/opt/blender/blender", "4.5.3")
BPY = BlenderBackend("bpy", "/venv/bin/python", "5.0.1")


def test_render_argv_for_the_executable() -> None:
    argv = build_render_argv(
        EXE, blend_file=Path("/jobs/7/shot.blend"), output_dir=Path("/out/7"), frames=[1, 2, 3]
    )
    assert argv == [
        "/opt/blender/blender",
        "-b",
        "--factory-startup",
        "--disable-autoexec",
        "/jobs/7/shot.blend",
        "--python-exit-code",
        "1",
        "-P",
        RENDER,
        "--",
        "--output-dir",
        "/out/7",
        "--frames",
        "1,2,3",
        "--device",
        "CPU",
    ]


def test_render_argv_for_bpy_with_every_option() -> None:
    argv = build_render_argv(
        BPY,
        blend_file=Path("/jobs/7/shot.blend"),
        output_dir=Path("/out/7"),
        frames=[10, 12],
        scene="Shot 010",
        threads=0,
    )
    assert argv == [
        "/venv/bin/python",
        RENDER,
        "--blend",
        "/jobs/7/shot.blend",
        "--output-dir",
        "/out/7",
        "--frames",
        "10,12",
        "--scene",
        "Shot 010",
        "--device",
        "CPU",
        "--threads",
        "0",
    ]


def test_render_argv_lets_the_scenes_scripts_run_only_when_allowed() -> None:
    def argv(backend: BlenderBackend, allow_scripts: bool) -> list[str]:
        return build_render_argv(
            backend,
            blend_file=Path("/jobs/7/shot.blend"),
            output_dir=Path("/out/7"),
            frames=[1],
            allow_scripts=allow_scripts,
        )

    allowed = argv(EXE, True)
    assert allowed[:5] == [
        "/opt/blender/blender",
        "-b",
        "--factory-startup",
        "--enable-autoexec",  # before the file, or it would load with scripts off
        "/jobs/7/shot.blend",
    ]
    assert "--disable-autoexec" not in allowed
    assert allowed[4:] == argv(EXE, False)[4:]
    assert argv(BPY, True) == [
        "/venv/bin/python",
        RENDER,
        "--blend",
        "/jobs/7/shot.blend",
        "--allow-scripts",
        "--output-dir",
        "/out/7",
        "--frames",
        "1",
        "--device",
        "CPU",
    ]
    assert "--allow-scripts" not in argv(BPY, False)
    assert "--enable-autoexec" not in argv(EXE, False)


def test_session_argv_lets_the_scenes_scripts_run_only_when_allowed() -> None:
    def request(allow_scripts: bool) -> RenderRequest:
        return RenderRequest(
            blend_file=Path("/jobs/7/shot.blend"),
            output_dir=Path("/out/7"),
            frames=[1],
            scene=None,
            device=DeviceChoice(),
            threads=None,
            files_dir=Path("/jobs/7"),
            blender_home=Path("/home/runner"),
            allow_scripts=allow_scripts,
        )

    session = str(SCRIPTS_DIR / "session.py")
    assert build_session_argv(EXE, request(True))[:5] == [
        "/opt/blender/blender",
        "-b",
        "--factory-startup",
        "--enable-autoexec",
        "/jobs/7/shot.blend",
    ]
    assert build_session_argv(EXE, request(False))[3] == "--disable-autoexec"
    assert build_session_argv(BPY, request(True)) == [
        "/venv/bin/python",
        session,
        "--blend",
        "/jobs/7/shot.blend",
        "--allow-scripts",
        "--device",
        "CPU",
    ]
    assert "--allow-scripts" not in build_session_argv(BPY, request(False))
    # A session that ran the scene's scripts never serves a request that does not allow them.
    assert session_key(BPY, request(True)) != session_key(BPY, request(False))


def test_render_argv_makes_paths_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    argv = build_render_argv(EXE, blend_file=Path("a.blend"), output_dir=Path("out"), frames=[-2])
    assert argv[4] == str(tmp_path / "a.blend")
    assert argv[argv.index("--output-dir") + 1] == str(tmp_path / "out")
    assert argv[argv.index("--frames") + 1] == "-2"


def test_render_argv_needs_frames() -> None:
    with pytest.raises(ValueError, match="no frames"):
        build_render_argv(EXE, blend_file=Path("/a.blend"), output_dir=Path("/o"), frames=[])


def test_script_argv_without_a_blend_file() -> None:
    script = SCRIPTS_DIR / "make_scene.py"
    assert build_script_argv(EXE, script, ["--output", "/s.blend"]) == [
        "/opt/blender/blender",
        "-b",
        "--factory-startup",
        "--disable-autoexec",
        "--python-exit-code",
        "1",
        "-P",
        str(script),
        "--",
        "--output",
        "/s.blend",
    ]
    assert build_script_argv(BPY, script, ["--output", "/s.blend"]) == [
        "/venv/bin/python",
        str(script),
        "--output",
        "/s.blend",
    ]


def test_script_argv_without_a_blend_file_has_no_scripts_to_allow() -> None:
    script = SCRIPTS_DIR / "probe_devices.py"
    assert build_script_argv(BPY, script, [], allow_scripts=True) == [
        "/venv/bin/python",
        str(script),
    ]


def test_labels() -> None:
    assert EXE.label == "blender 4.5.3 (/opt/blender/blender)"
    assert BPY.label == "bpy 5.0.1 (/venv/bin/python)"


def test_blender_env_points_every_user_folder_into_home(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/artist", "XDG_CONFIG_HOME": "/home/artist/.c"}
    env = blender_env(tmp_path / "home", base)
    home = tmp_path / "home"
    assert home.is_dir()
    assert env["PATH"] == "/usr/bin"
    assert env["HOME"] == str(home)
    assert env["PYTHONUNBUFFERED"] == "1"
    for name in (
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "BLENDER_USER_RESOURCES",
        "BLENDER_USER_CONFIG",
        "BLENDER_USER_SCRIPTS",
        "BLENDER_USER_DATAFILES",
    ):
        assert env[name].startswith(str(home) + "/"), name
    assert base["HOME"] == "/home/artist"  # the caller's mapping is left alone


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_detect_backend_on_a_missing_program() -> None:
    with pytest.raises(BlenderNotFound, match=r"/nowhere/blender was not found; install Blender"):
        detect_backend("/nowhere/blender")


def test_detect_backend_on_another_program(tmp_path: Path) -> None:
    fake = _script(tmp_path / "blender", "#!/bin/sh\necho 'hello from a shell script'\n")
    with pytest.raises(BlenderNotFound, match="neither Blender nor a Python.*hello from a shell"):
        detect_backend(fake)


def test_detect_backend_on_a_python_without_bpy(tmp_path: Path) -> None:
    # -S leaves site-packages, and with it bpy, off the path.
    python = _script(tmp_path / "python3", f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    with pytest.raises(BlenderNotFound, match=r"cannot import bpy .*pip install bpy==5\.0\.1"):
        detect_backend(python)


@pytest.mark.blender
def test_detect_backend_on_real_blenders() -> None:
    bpy = detect_backend(sys.executable)
    assert bpy == BlenderBackend("bpy", sys.executable, "5.0.1")
    blender = shutil.which("blender")
    assert blender is not None
    exe = detect_backend("blender")  # a name on PATH works as well as a path
    assert exe.kind == "executable"
    assert exe.path == blender
    assert exe.version.startswith("3.4")


@pytest.mark.blender
def test_find_backends_lists_bpy_first(
    bpy_backend: BlenderBackend, blender_exe_backend: BlenderBackend
) -> None:
    assert find_backends() == [bpy_backend, blender_exe_backend]
