"""Run Blender renders: find a backend, build its argv, stream its JSON events.

Two backends render the same way: a Blender executable (``blender -b …``) or a Python
interpreter that can ``import bpy``. Both run ``blender_scripts/render.py``, which prints
one ``@framefarm {json}`` line per event (see that script for the events).

Exceptions::

    BlenderError
    ├── BlenderNotFound    no usable Blender at the given path, or none found at all
    └── RenderFailed       a render exited non-zero, reported an error or missed frames
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from blender_scripts import SCRIPTS_DIR

EVENT_PREFIX = "@framefarm "
RENDER_SCRIPT = SCRIPTS_DIR / "render.py"
LAST_LINES_KEPT = 30
DETECT_TIMEOUT_S = 120.0
TERMINATE_GRACE_S = 5.0
INSTALL_HINT = (
    "install Blender (e.g. `apt install blender`) or the bpy module for Python 3.11 "
    "(`pip install bpy==5.0.1`), then pass its path with --blender"
)

_BLENDER_VERSION = re.compile(r"^Blender (\d+\.\d+(?:\.\d+)?)", re.MULTILINE)
_BPY_VERSION_MARK = "framefarm-bpy-version"
_BPY_PROBE = f"import bpy; print({_BPY_VERSION_MARK!r}, '.'.join(map(str, bpy.app.version)))"


class BlenderError(Exception):
    """Base of every error raised by this module."""


class BlenderNotFound(BlenderError):
    """No usable Blender executable or bpy module; the message says what to install."""


class RenderFailed(BlenderError):
    """A render did not save every frame; the message carries Blender's last output."""


@dataclass(frozen=True)
class BlenderBackend:
    """A way to run Blender: its executable, or a Python interpreter with bpy."""

    kind: Literal["executable", "bpy"]
    path: str
    version: str

    @property
    def label(self) -> str:
        name = "blender" if self.kind == "executable" else "bpy"
        return f"{name} {self.version} ({self.path})"


def _run_probe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="framefarm-blender-home-") as home:
        try:
            return subprocess.run(
                argv,
                env=blender_env(Path(home)),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=DETECT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BlenderNotFound(
                f"{argv[0]} did not answer within {DETECT_TIMEOUT_S:.0f} s"
            ) from exc
        except OSError as exc:
            raise BlenderNotFound(f"cannot run {argv[0]}: {exc}; {INSTALL_HINT}") from exc


def _bpy_backend(python: str) -> BlenderBackend:
    probe = _run_probe([python, "-c", _BPY_PROBE])
    for line in probe.stdout.splitlines():
        if line.startswith(_BPY_VERSION_MARK + " "):
            return BlenderBackend("bpy", python, line.split()[-1])
    last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
    raise BlenderNotFound(
        f"{python} is a Python interpreter that cannot import bpy ({last}); install it with "
        f"`{python} -m pip install bpy==5.0.1` (needs Python 3.11) or pass a Blender "
        "executable with --blender"
    )


def detect_backend(path: str) -> BlenderBackend:
    """Run ``path`` once or twice to learn whether it is Blender or a Python with bpy."""
    resolved = shutil.which(path)
    if resolved is None:
        problem = "is not executable" if os.path.exists(path) else "was not found"
        raise BlenderNotFound(f"{path} {problem}; {INSTALL_HINT}")
    resolved = os.path.abspath(resolved)
    probe = _run_probe([resolved, "--version"])
    output = probe.stdout + probe.stderr
    match = _BLENDER_VERSION.search(output)
    if match and probe.returncode == 0:
        return BlenderBackend("executable", resolved, match.group(1))
    if output.startswith("Python "):
        return _bpy_backend(resolved)
    first = (output.strip().splitlines() or ["no output"])[0]
    raise BlenderNotFound(
        f"{resolved} is neither Blender nor a Python interpreter with bpy "
        f"(`--version` exited {probe.returncode}: {first}); {INSTALL_HINT}"
    )


def find_backends() -> list[BlenderBackend]:
    """Usable backends: bpy in this interpreter first, then `blender` on PATH."""
    found: list[BlenderBackend] = []
    if importlib.util.find_spec("bpy") is not None:
        with contextlib.suppress(BlenderNotFound):
            found.append(_bpy_backend(sys.executable))
    blender = shutil.which("blender")
    if blender is not None:
        with contextlib.suppress(BlenderNotFound):
            found.append(detect_backend(blender))
    return found


def blender_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Blender subprocess that keeps its files inside ``home`` (created)."""
    home = Path(os.path.abspath(home))
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if base is None else base)
    user = home / "blender"
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        BLENDER_USER_RESOURCES=str(user),
        BLENDER_USER_CONFIG=str(user / "config"),
        BLENDER_USER_SCRIPTS=str(user / "scripts"),
        BLENDER_USER_DATAFILES=str(user / "datafiles"),
        BLENDER_USER_EXTENSIONS=str(user / "extensions"),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def pinned(argv: list[str], cpus: Sequence[int]) -> list[str]:
    """``argv`` started on ``cpus`` only (Linux ``taskset``, which then becomes the program:
    same process, and every thread it starts stays there); as it is for no CPUs."""
    if not cpus:
        return argv
    return ["taskset", "--cpu-list", ",".join(str(cpu) for cpu in sorted(cpus)), *argv]


def build_script_argv(
    backend: BlenderBackend,
    script: Path,
    script_args: Sequence[str],
    *,
    blend_file: Path | None = None,
    allow_scripts: bool = False,
) -> list[str]:
    """The command that runs a script from blender_scripts/ with ``script_args``.

    The executable opens ``blend_file`` itself; a bpy interpreter cannot, so the script gets
    ``--blend`` and opens the file. Either way the file's own scripts (Python drivers,
    registered text blocks) stay off unless ``allow_scripts``, which only a job type sets.
    """
    blend = None if blend_file is None else os.path.abspath(blend_file)
    if backend.kind == "bpy":
        blend_args = [] if blend is None else ["--blend", blend]
        if blend is not None and allow_scripts:
            blend_args.append("--allow-scripts")
        return [backend.path, str(script), *blend_args, *script_args]
    return [
        backend.path,
        "-b",
        "--factory-startup",
        # Factory settings already keep auto-run off; say so either way, and turn it on
        # explicitly (-y) when allowed.
        "--enable-autoexec" if allow_scripts else "--disable-autoexec",
        *([] if blend is None else [blend]),
        "--python-exit-code",
        "1",
        "-P",
        str(script),
        "--",
        *script_args,
    ]


def build_render_argv(
    backend: BlenderBackend,
    *,
    blend_file: Path,
    output_dir: Path,
    frames: Sequence[int],
    scene: str | None = None,
    device: str = "CPU",
    device_ids: Sequence[str] = (),
    threads: int | None = None,
    allow_scripts: bool = False,
) -> list[str]:
    """The command that renders ``frames`` of ``blend_file`` into ``output_dir``."""
    if not frames:
        raise ValueError("no frames to render")
    args = ["--output-dir", os.path.abspath(output_dir)]
    args += ["--frames", ",".join(str(frame) for frame in frames)]
    if scene is not None:
        args += ["--scene", scene]
    args += ["--device", device]
    if device_ids:
        args += ["--gpu-ids", ",".join(device_ids)]
    if threads is not None:
        args += ["--threads", str(threads)]
    return build_script_argv(
        backend, RENDER_SCRIPT, args, blend_file=blend_file, allow_scripts=allow_scripts
    )


@dataclass(frozen=True)
class RenderEvent:
    """One event printed by render.py; ``data`` is the whole JSON object."""

    name: str
    data: dict[str, Any]

    @property
    def frame(self) -> int | None:
        frame = self.data.get("frame")
        return frame if isinstance(frame, int) and not isinstance(frame, bool) else None


def parse_event_line(line: str) -> RenderEvent | None:
    """The event on ``line``, or None for Blender's own output and malformed events."""
    # Blender 3.4 prints its "Fra:" status without a newline until its stats handlers ran,
    # so an event can follow other text on the same line.
    start = line.find(EVENT_PREFIX)
    if start < 0:
        return None
    try:
        data = json.loads(line[start + len(EVENT_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    return RenderEvent(data["event"], data)


@dataclass
class RenderResult:
    """What a render process did, as seen from its output."""

    returncode: int
    saved: dict[int, Path] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    last_lines: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def run_render(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    on_event: Callable[[RenderEvent], None] | None = None,
    on_output_line: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    cwd: Path | None = None,
) -> RenderResult:
    """Run a render command, calling back on this thread for each event and output line."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # a Ctrl-C meant for the runner must not reach Blender
        )
    except OSError as exc:
        raise BlenderNotFound(f"cannot start {argv[0]}: {exc}; {INSTALL_HINT}") from exc

    result = RenderResult(returncode=0)
    last_lines: deque[str] = deque(maxlen=LAST_LINES_KEPT)
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(
        target=_read_lines, args=(process.stdout, lines), name="blender-output", daemon=True
    )
    reader.start()
    kill_at: float | None = None
    try:
        while True:
            if stop is not None and stop.is_set() and kill_at is None:
                result.stopped = True
                _signal_group(process, signal.SIGTERM)
                kill_at = time.monotonic() + TERMINATE_GRACE_S
            if kill_at is not None and time.monotonic() > kill_at:
                _signal_group(process, signal.SIGKILL)
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            line = line.rstrip("\r\n")
            event = parse_event_line(line)
            if event is None:
                if line.strip():
                    last_lines.append(line)
                if on_output_line is not None:
                    on_output_line(line)
                continue
            _record(result, event)
            if on_event is not None:
                on_event(event)
        result.returncode = process.wait()
    finally:
        if process.poll() is None:  # a callback raised: do not leave Blender running
            _signal_group(process, signal.SIGKILL)
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        result.last_lines = list(last_lines)
        result.seconds = time.monotonic() - started
    return result


def _record(result: RenderResult, event: RenderEvent) -> None:
    if event.name == "saved" and event.frame is not None:
        result.saved[event.frame] = Path(str(event.data.get("path", "")))
    elif event.name == "error":
        result.errors.append(str(event.data.get("message", "unknown error")))


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"Blender was killed by {name}"
    return f"Blender exited with code {returncode}"


def check_render(result: RenderResult, frames: Sequence[int]) -> None:
    """Raise RenderFailed unless the render exited 0, reported no error and saved every frame."""
    problems: list[str] = []
    if result.stopped:
        problems.append("render stopped before it finished")
    if result.returncode != 0:
        problems.append(_describe_exit(result.returncode))
    problems += [f"error: {message}" for message in result.errors]
    missing = [str(frame) for frame in frames if frame not in result.saved]
    if missing:
        problems.append(f"frames never saved: {', '.join(missing)}")
    if problems:
        output = "\n".join(result.last_lines) or "(none)"
        raise RenderFailed(f"{'; '.join(problems)}; last output:\n{output}")
