"""Encode overhead: the runner's encode against the bare FFmpeg commands on the same EXRs.

    python -m benchmarks.encode [--frames 24] [--size 1280x720] [--repeats 3]

Writes a sequence of half-float RGBA EXRs (ZIP, premultiplied alpha, as Blender writes them)
with a transparent corner, then for each video deliverable times ``runner.encode.encode_video``
(alpha scan, frame links, two passes with progress parsing, atomic rename) against the same
two FFmpeg passes run directly, alternating which goes first. Prints the median of each and
their ratio. Downloading the frames from the manager is not part of either: the bare command
has no farm to download from, so this isolates what the runner adds to FFmpeg itself.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenEXR
from rich.console import Console
from rich.table import Table

from runner.encode import FRAME_PATTERN, encode_video
from runner.ffmpeg import (
    Deliverable,
    EncodeSettings,
    build_ffmpeg_argv,
    default_bitrate_kbps,
)

DELIVERABLES = [Deliverable.EXR_264_MP4, Deliverable.EXR_AV1_MP4, Deliverable.EXR_VP9_WEBM]
FPS = Fraction(24)


def write_frames(folder: Path, count: int, width: int, height: int) -> list[Path]:
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for index in range(count):
        phase = index / count
        rgba = np.empty((height, width, 4), np.float32)
        rgba[..., 0] = (x / width + phase) % 1.0
        rgba[..., 1] = y / height
        rgba[..., 2] = 0.18 + 0.5 * np.sin(6.28 * (x / width + phase)) ** 2
        rgba[..., 3] = np.where((x < width / 4) & (y < height / 4), 0.0, 1.0)
        rgba[..., :3] *= rgba[..., 3:]
        path = folder / (FRAME_PATTERN % index)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"RGBA": rgba.astype(np.float16)}) as exr:
            exr.write(str(path))
        paths.append(path)
    return paths


def bare_argv(settings: EncodeSettings, pass_number: int) -> list[str]:
    """The same pass as the runner's, without the progress pipe only the runner reads."""
    argv = build_ffmpeg_argv(settings, pass_number=pass_number)  # type: ignore[arg-type]
    index = argv.index("-progress")
    return argv[: index - 1] + argv[index + 2 :]  # drops -nostats -progress pipe:1


def time_bare(
    frames_dir: Path, deliverable: Deliverable, size: tuple[int, int], out: Path
) -> float:
    settings = EncodeSettings(
        deliverable=deliverable,
        frames_dir=frames_dir,
        fps=FPS,
        bitrate_kbps=default_bitrate_kbps(deliverable, *size, FPS),
        matte=deliverable != Deliverable.EXR_264_MP4,
        passlog=out.with_suffix(".passlog"),
        output=out,
    )
    started = time.perf_counter()
    for pass_number in (1, 2):
        subprocess.run(bare_argv(settings, pass_number), check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_ours(paths: list[Path], deliverable: Deliverable, out: Path, work: Path) -> float:
    started = time.perf_counter()
    result = encode_video(paths, out, deliverable=deliverable, fps=FPS, workdir=work)
    elapsed = time.perf_counter() - started
    assert result.has_matte == (deliverable != Deliverable.EXR_264_MP4)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--deliverables",
        default=",".join(str(d) for d in DELIVERABLES),
        help="comma-separated, of " + ", ".join(str(d) for d in DELIVERABLES),
    )
    args = parser.parse_args()
    chosen = [Deliverable(name) for name in args.deliverables.split(",")]
    width, height = (int(part) for part in args.size.split("x"))
    console = Console()
    root = Path(tempfile.mkdtemp(prefix="framefarm-encode-bench-"))
    try:
        paths = write_frames(root / "frames", args.frames, width, height)
        table = Table(title=f"Encode overhead: {args.frames} frames, {width}x{height}, two-pass")
        for column in ("deliverable", "bare FFmpeg (median)", "runner encode (median)", "ratio"):
            table.add_column(column, justify="right")
        for deliverable in chosen:
            bare, ours = [], []
            for repeat in range(args.repeats):
                out = root / f"{deliverable}-{repeat}"
                out.mkdir()
                for which in ("bare", "ours") if repeat % 2 == 0 else ("ours", "bare"):
                    if which == "bare":
                        size = (width, height)
                        bare.append(time_bare(root / "frames", deliverable, size, out / "bare.v"))
                    else:
                        ours.append(time_ours(paths, deliverable, out / "ours.v", out))
            b, o = statistics.median(bare), statistics.median(ours)
            console.log(f"{deliverable}: bare {bare}, ours {ours}")
            table.add_row(str(deliverable), f"{b:.2f} s", f"{o:.2f} s", f"{o / b:.3f}")
        console.print(table)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
