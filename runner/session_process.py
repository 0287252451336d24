"""One Blender session process: its argv, what it may render, start, requests, end.

``blender_scripts/session.py`` keeps a .blend loaded and renders the frames asked for on
its stdin; ``runner.session`` decides when to start and end one.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from blender_scripts import SCRIPTS_DIR
from runner.blender import (
    TERMINATE_GRACE_S,
    BlenderBackend,
    BlenderNotFound,
    _read_lines,
    _signal_group,
    blender_env,
    build_script_argv,
    pinned,
)
from runner.renderer import RenderRequest

SESSION_SCRIPT = SCRIPTS_DIR / "session.py"


def resident_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (Linux ``/proc``), None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def build_session_argv(backend: BlenderBackend, request: RenderRequest) -> list[str]:
    args = ["--device", request.device.device_type]
    if request.device.ids:
        args += ["--gpu-ids", ",".join(request.device.ids)]
    if request.scene is not None:
        args += ["--scene", request.scene]
    if request.threads is not None:
        args += ["--threads", str(request.threads)]
    argv = build_script_argv(
        backend,
        SESSION_SCRIPT,
        args,
        blend_file=request.blend_file,
        allow_scripts=request.allow_scripts,
    )
    return pinned(argv, request.device.cpus)


def session_key(backend: BlenderBackend, request: RenderRequest) -> tuple[object, ...]:
    """What must match for a loaded session to render a request; the file by its identity.

    Not its modification time: the workspace touches cached blobs (hard links of job files)
    on every use. A changed job file is a new blob, linked anew: another inode. Whether the
    scene's scripts may run is part of it: a Blender that ran them never serves a request
    that does not allow them, nor the other way round.
    """
    blend = request.blend_file.resolve()
    stat = blend.stat() if blend.is_file() else None
    identity = None if stat is None else (stat.st_dev, stat.st_ino, stat.st_size)
    device = (request.device.device_type, tuple(request.device.ids), request.device.cpus)
    return (
        backend,
        blend,
        identity,
        request.scene,
        device,
        request.threads,
        request.files_dir,
        request.allow_scripts,
    )


@dataclass
class BlenderSession:
    """One running session.py process and the frame times it has shown so far."""

    process: subprocess.Popen[str]
    key: tuple[object, ...]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    frame_seconds: list[float] = field(default_factory=list)
    first_rss: int | None = None
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, output_dir: Path, frames: list[int]) -> None:
        assert self.process.stdin is not None
        request = {"output_dir": str(output_dir.resolve()), "frames": frames}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def close(self, *, kill: bool = False) -> int:
        """End the process (end of input, else signals) and return its exit status."""
        if not kill:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()  # session.py ends at the end of its input
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(TERMINATE_GRACE_S)
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
        code = self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)  # it ends at end of output; then its pipe may close
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        return code


def start_session(
    backend: BlenderBackend, request: RenderRequest, key: tuple[object, ...]
) -> BlenderSession:
    argv = build_session_argv(backend, request)
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=blender_env(request.blender_home),
            cwd=request.files_dir,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # a Ctrl-C meant for the runner must not reach Blender
        )
    except OSError as exc:
        raise BlenderNotFound(f"cannot start {argv[0]}: {exc}") from exc
    session = BlenderSession(process, key)
    session.reader = threading.Thread(
        target=_read_lines, args=(process.stdout, session.lines), name="session", daemon=True
    )
    session.reader.start()
    return session
