"""Encode EXR frames into a video deliverable with FFmpeg, and probe what an FFmpeg can do.

The argv comes from ``runner.ffmpeg``; this module reads the frames (size, transparency),
links them into a private folder under ``workdir`` as ``000000.exr…``, runs both passes with
progress from ``-progress pipe:1``, and removes the folder and its pass logs whatever happens.

Exceptions::

    EncodeError
    ├── FFmpegNotFound     no usable ffmpeg at the given path
    ├── EncodeInputError   the EXR frames are missing, unreadable or of different sizes
    ├── EncodeFailed       ffmpeg exited non-zero; the message carries its last lines
    └── EncodeStopped      the stop event was set before the encode finished
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Literal

from runner import exr
from runner.ffmpeg import (
    FRAME_PATTERN,
    Deliverable,
    EncodeSettings,
    FFmpegInfo,
    ProgressReader,
    build_ffmpeg_argv,
    build_preview_argv,
    default_bitrate_kbps,
    even,
    parse_decoders,
    parse_encoders,
    parse_ffmpeg_version,
    parse_filters,
    parse_fps,
    video_spec,
)

LAST_LINES_KEPT = 30
PROBE_TIMEOUT_S = 30.0
TERMINATE_GRACE_S = 5.0
INSTALL_HINT = "install FFmpeg with zscale (e.g. `apt install ffmpeg`) or pass its path"


class EncodeError(Exception):
    """Base of every error raised by this module."""


class FFmpegNotFound(EncodeError):
    """The ffmpeg executable is missing or does not run."""


class EncodeInputError(EncodeError):
    """The EXR frames cannot be encoded as given."""


class EncodeFailed(EncodeError):
    """FFmpeg exited non-zero; the message ends with its last output lines."""


class EncodeStopped(EncodeError):
    """The encode was stopped on request."""


@dataclass(frozen=True)
class EncodeProgress:
    """Where an encode is: ``frame`` of ``frames`` in pass ``pass_number`` of ``passes``."""

    pass_number: int
    passes: int
    frame: int
    frames: int

    @property
    def fraction(self) -> float:
        within = min(self.frame, self.frames) / self.frames if self.frames else 1.0
        return (self.pass_number - 1 + within) / self.passes


@dataclass(frozen=True)
class EncodeResult:
    """A finished deliverable encode."""

    output: Path
    deliverable: Deliverable
    frames: int
    width: int
    height: int
    fps: Fraction
    bitrate_kbps: int
    has_matte: bool
    seconds: float


@dataclass(frozen=True)
class PreviewResult:
    """A finished SDR preview encode."""

    output: Path
    frames: int
    seconds: float


OnProgress = Callable[[EncodeProgress], None]


def _probe(ffmpeg: str, flag: str) -> str:
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", flag],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FFmpegNotFound(f"cannot run {ffmpeg} {flag}: {exc}; {INSTALL_HINT}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FFmpegNotFound(f"{ffmpeg} {flag} exited {done.returncode}: {last}; {INSTALL_HINT}")
    return done.stdout


def probe_ffmpeg(ffmpeg: str = "ffmpeg") -> FFmpegInfo:
    """The version, video encoders, decoders and filters of ``ffmpeg``."""
    resolved = shutil.which(ffmpeg)
    if resolved is None:
        raise FFmpegNotFound(f"{ffmpeg} was not found; {INSTALL_HINT}")
    version = parse_ffmpeg_version(_probe(resolved, "-version"))
    if version is None:
        raise FFmpegNotFound(f"{resolved} does not say it is FFmpeg; {INSTALL_HINT}")
    return FFmpegInfo(
        path=resolved,
        version=version,
        encoders=parse_encoders(_probe(resolved, "-encoders")),
        decoders=parse_decoders(_probe(resolved, "-decoders")),
        filters=parse_filters(_probe(resolved, "-filters")),
    )


def _frame_size(paths: Sequence[Path]) -> tuple[int, int]:
    if not paths:
        raise EncodeInputError("no EXR frames to encode")
    try:
        infos = [exr.read_exr_info(path) for path in paths]
    except exr.ExrError as exc:
        raise EncodeInputError(str(exc)) from exc
    first = infos[0]
    for info in infos[1:]:
        if (info.width, info.height) != (first.width, first.height):
            raise EncodeInputError(
                f"{info.path.name} is {info.width}x{info.height} but {first.path.name} is "
                f"{first.width}x{first.height}; every frame of a video must have one size"
            )
    return first.width, first.height


def _has_transparency(paths: Sequence[Path]) -> bool:
    try:
        return exr.has_transparency(paths)
    except exr.ExrError as exc:
        raise EncodeInputError(str(exc)) from exc


@contextlib.contextmanager
def _encode_folder(workdir: Path, paths: Sequence[Path]) -> Iterator[Path]:
    """A private folder with the frames linked in as 000000.exr…; removed afterwards."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="encode-", dir=workdir)).absolute()
    try:
        frames = folder / "frames"
        frames.mkdir()
        for index, path in enumerate(paths):
            link = frames / (FRAME_PATTERN % index)
            try:
                link.symlink_to(Path(path).absolute())
            except OSError:
                shutil.copyfile(path, link)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def encode_video(
    exr_paths: Sequence[Path],
    output: Path,
    *,
    deliverable: Deliverable | str,
    fps: Fraction | int | float | str,
    bitrate_kbps: int | None = None,
    workdir: Path,
    ffmpeg: str = "ffmpeg",
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
) -> EncodeResult:
    """Encode ``exr_paths`` (in this order) into ``output`` in two passes."""
    spec = video_spec(deliverable)
    rate = parse_fps(fps)
    if bitrate_kbps is not None and bitrate_kbps <= 0:
        raise ValueError(f"bitrate must be positive, not {bitrate_kbps} kbit/s")
    paths = [Path(path) for path in exr_paths]
    width, height = _frame_size(paths)
    matte = spec.matte_pix_fmt is not None and _has_transparency(paths)
    kbps = bitrate_kbps or default_bitrate_kbps(spec.deliverable, width, height, rate)
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    started = time.monotonic()
    with _encode_folder(workdir, paths) as folder:
        settings = EncodeSettings(
            deliverable=spec.deliverable,
            frames_dir=folder / "frames",
            fps=rate,
            bitrate_kbps=kbps,
            matte=matte,
            passlog=folder / "passlog",
            output=partial,
        )
        try:
            for pass_number in (1, 2):
                argv = build_ffmpeg_argv(settings, pass_number=pass_number, ffmpeg=ffmpeg)
                what = f"{spec.deliverable} pass {pass_number} of 2"
                run_ffmpeg(
                    argv,
                    what=what,
                    frames=len(paths),
                    pass_number=pass_number,
                    passes=2,
                    on_progress=on_progress,
                    stop=stop,
                )
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    return EncodeResult(
        output=output,
        deliverable=spec.deliverable,
        frames=len(paths),
        width=even(width),
        height=even(height),
        fps=rate,
        bitrate_kbps=kbps,
        has_matte=matte,
        seconds=time.monotonic() - started,
    )


def encode_preview(
    exr_paths: Sequence[Path],
    output: Path,
    *,
    fps: Fraction | int | float | str,
    workdir: Path,
    ffmpeg: str = "ffmpeg",
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
) -> PreviewResult:
    """Encode the small 8-bit SDR H.264 preview of ``exr_paths`` into ``output``."""
    rate = parse_fps(fps)
    paths = [Path(path) for path in exr_paths]
    width, height = _frame_size(paths)
    output = Path(output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    started = time.monotonic()
    with _encode_folder(workdir, paths) as folder:
        argv = build_preview_argv(
            frames_dir=folder / "frames",
            fps=rate,
            width=width,
            height=height,
            output=partial,
            ffmpeg=ffmpeg,
        )
        try:
            run_ffmpeg(argv, what="preview", frames=len(paths), on_progress=on_progress, stop=stop)
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    return PreviewResult(output=output, frames=len(paths), seconds=time.monotonic() - started)


Stream = Literal["progress", "log"]


def _read_lines(
    stream: IO[str], name: Stream, lines: queue.Queue[tuple[Stream, str | None]]
) -> None:
    try:
        for line in stream:
            lines.put((name, line))
    finally:
        lines.put((name, None))


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def run_ffmpeg(
    argv: Sequence[str],
    *,
    what: str,
    frames: int,
    pass_number: int = 1,
    passes: int = 1,
    on_progress: OnProgress | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Run one FFmpeg command that reports ``-progress pipe:1``; its last log lines."""
    if stop is not None and stop.is_set():
        raise EncodeStopped(f"{what} stopped before it started")
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # a Ctrl-C meant for the runner must not reach FFmpeg
        )
    except OSError as exc:
        raise FFmpegNotFound(f"cannot start {argv[0]}: {exc}; {INSTALL_HINT}") from exc
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[tuple[Stream, str | None]] = queue.Queue()
    readers = [
        threading.Thread(target=_read_lines, args=(stream, name, lines), daemon=True)
        for stream, name in ((process.stdout, "progress"), (process.stderr, "log"))
    ]
    for reader in readers:
        reader.start()
    last_lines: deque[str] = deque(maxlen=LAST_LINES_KEPT)
    progress = ProgressReader()
    frames_done = 0
    open_streams, stopped, kill_at = 2, False, None
    try:
        while open_streams:
            if stop is not None and stop.is_set() and kill_at is None:
                stopped = True
                _signal_group(process, signal.SIGTERM)
                kill_at = time.monotonic() + TERMINATE_GRACE_S
            if kill_at is not None and time.monotonic() > kill_at:
                _signal_group(process, signal.SIGKILL)
            try:
                name, line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif name == "log":
                if line.strip():
                    last_lines.append(line.rstrip())
            elif (block := progress.feed(line)) is not None:
                frames_done = block.frame
                if on_progress is not None:
                    on_progress(EncodeProgress(pass_number, passes, block.frame, frames))
        returncode = process.wait()
    finally:
        if process.poll() is None:  # a callback raised: do not leave FFmpeg running
            _signal_group(process, signal.SIGKILL)
            process.wait()
        for reader in readers:
            reader.join(timeout=5)
        process.stdout.close()
        process.stderr.close()
    output = "\n".join(last_lines) or "(none)"
    if stopped:
        raise EncodeStopped(f"{what} stopped on request")
    if returncode != 0:
        raise EncodeFailed(f"ffmpeg {what} exited with code {returncode}; last output:\n{output}")
    if frames_done != frames:
        raise EncodeFailed(
            f"ffmpeg {what} encoded {frames_done} of {frames} frames; last output:\n{output}"
        )
    return list(last_lines)
