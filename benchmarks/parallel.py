"""Parallel efficiency: two runners against one on the same job, CPU threads split between them.

    python -m benchmarks.parallel [--frames 8] [--size 64] [--samples 40] [--threads 2]

Renders the same job (N frames, one frame per task, persistent sessions on) with one runner
using every thread, then with two runners on this machine using half the threads each
(once free to run anywhere, once each pinned to its half of the CPUs with ``--cpus``), and
the same frames with bare Blender (``-a``, every thread) for reference. Both farm runs get
the same CPU, so ideally they take the same time: efficiency = time with one runner / time
with two (above 1 when two half-size renders use the cores better than one full-size one). Each
farm set-up runs ``--repeats`` times, alternating which goes first; medians are shown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import Manager, running_manager
from benchmarks.overhead import FrameCost, make_scene, running_runner, time_bare, time_farm
from runner.blender import BlenderBackend, detect_backend


def time_one(
    manager: Manager,
    root: Path,
    backend: BlenderBackend,
    scene: Path,
    args: argparse.Namespace,
    repeat: int,
) -> float:
    with running_runner(manager, root, f"solo-{repeat}", backend, args.threads):
        return time_farm(manager, scene, args.frames, {})


def time_two(
    manager: Manager,
    root: Path,
    backend: BlenderBackend,
    scene: Path,
    args: argparse.Namespace,
    repeat: int,
    pinned: bool,
) -> float:
    """Two runners with half the threads each; ``pinned``: each on its half of the CPUs."""
    half = args.threads // 2
    with ExitStack() as stack:
        for index, name in enumerate((f"pair-a-{repeat}", f"pair-b-{repeat}")):
            cpus = ("--cpus", f"{index * half}-{index * half + half - 1}") if pinned else ()
            stack.enter_context(running_runner(manager, root, name, backend, half, *cpus))
        return time_farm(manager, scene, args.frames, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all")
    parser.add_argument("--repeats", type=int, default=3, help="medians of this many runs")
    parser.add_argument("--blender", default=sys.executable, help="a Blender or a Python with bpy")
    args = parser.parse_args()
    if args.threads < 2 or args.threads % 2:
        parser.error("--threads must be even, to split between two runners")
    console = Console()
    backend = detect_backend(args.blender)
    root = Path(tempfile.mkdtemp(prefix="framefarm-parallel-bench-"))
    cost = FrameCost("custom", args.size, args.samples, args.frames)
    try:
        scene = make_scene(backend, root / "scene.blend", cost, root / "home")
        bare = time_bare(backend, scene, root / "bare", args.threads, root / "home")
        times: dict[str, list[float]] = {"one": [], "two": [], "pinned": []}
        with running_manager(root / "manager") as manager:
            for repeat in range(args.repeats):
                # Rotate which goes first: the machine's other load drifts.
                order = list(times)[repeat % 3 :] + list(times)[: repeat % 3]
                for which in order:
                    if which == "one":
                        seconds = time_one(manager, root, backend, scene, args, repeat)
                    else:
                        pinned = which == "pinned"
                        seconds = time_two(manager, root, backend, scene, args, repeat, pinned)
                    times[which].append(seconds)
        console.log(f"runs: {times}")
        one, two, both_pinned = (statistics.median(times[which]) for which in times)
        title = f"{args.frames} frames, {args.size}², {args.samples} samples, {backend.label}"
        table = Table(title=f"Parallel efficiency: {title}, medians of {args.repeats}")
        for column in ("set-up", "wall time", "per frame"):
            table.add_column(column, justify="right")
        half = args.threads // 2
        for label, seconds in (
            (f"bare Blender -a, {args.threads} threads", bare),
            (f"1 runner × {args.threads} threads", one),
            (f"2 runners × {half} thread{'s' if half > 1 else ''}", two),
            ("the same, each on its own CPUs (--cpus)", both_pinned),
        ):
            table.add_row(label, f"{seconds:.1f} s", f"{seconds / args.frames:.2f} s")
        console.print(table)
        console.print(
            f"parallel efficiency (1 runner / 2 runners): {one / two:.2f}, "
            f"each on its own CPUs: {one / both_pinned:.2f}"
        )
        console.print(f"load average: {os.getloadavg()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
