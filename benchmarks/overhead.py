"""Farm overhead: the same frames by bare Blender and through the farm, for three frame costs.

    python -m benchmarks.overhead [--sizes tiny,1s,5s] [--backends bpy,executable] [--threads 2]

For each frame cost (about 0.05 s, 1 s and 5 s a frame on 2 threads: the samples of the
last two are scaled to that by rendering one frame first, ``--no-calibrate`` keeps them as
listed) and each Blender backend, renders the same N frames of the same scene: bare
(``blender -b scene -a``, or a Python with ``bpy`` running ``render(animation=True)``), and
through the farm (a real manager and one runner on this machine, the farm's default of one
frame per task, timed from the job's submission to its completion with every EXR uploaded),
with persistent sessions on and off. Prints wall times and the ratio farm / bare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.common import Manager, running_manager
from blender_scripts import SCRIPTS_DIR
from framefarm.submit import make_client, submit_blend
from runner.blender import (
    BlenderBackend,
    blender_env,
    build_script_argv,
    detect_backend,
    parse_event_line,
)


@dataclass(frozen=True)
class FrameCost:
    name: str
    size: int  # square resolution
    samples: int
    frames: int
    seconds: float | None = None
    """The frame time aimed at: samples are scaled to it on this machine (None: as given)."""


# The samples are a starting point: the machine's speed differs between days by 2-3 times,
# so for "1s" and "5s" a frame is rendered first and the samples scaled to the frame time.
FRAME_COSTS = {
    "tiny": FrameCost("tiny", 64, 1, 20),
    "1s": FrameCost("1s", 128, 75, 8, seconds=1.0),
    "5s": FrameCost("5s", 256, 100, 4, seconds=5.0),
}
BARE_BPY = """
import bpy, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=False)
scene = bpy.context.scene
scene.render.filepath = sys.argv[2] + "/frame_######"
scene.render.threads_mode, scene.render.threads = "FIXED", int(sys.argv[3])
bpy.ops.render.render(animation=True)
"""


def make_scene(backend: BlenderBackend, path: Path, cost: FrameCost, home: Path) -> Path:
    args = ["--output", str(path), "--size", str(cost.size), "--samples", str(cost.samples)]
    args += ["--frame-start", "1", "--frame-end", str(cost.frames)]
    argv = build_script_argv(backend, SCRIPTS_DIR / "make_scene.py", args)
    subprocess.run(argv, env=blender_env(home), capture_output=True, check=True, timeout=300)
    return path


def frame_seconds(
    backend: BlenderBackend, scene: Path, out: Path, threads: int | None, home: Path
) -> float:
    """How long Blender takes for frame 1 of ``scene``, by render.py's own timing (threads
    None: Blender's automatic count)."""
    args = ["--output-dir", str(out), "--frames", "1"]
    args += [] if threads is None else ["--threads", str(threads)]
    argv = build_script_argv(backend, SCRIPTS_DIR / "render.py", args, blend_file=scene)
    done = subprocess.run(argv, env=blender_env(home), capture_output=True, text=True, check=True)
    events = (parse_event_line(line) for line in done.stdout.splitlines())
    return next(float(e.data["seconds"]) for e in events if e and e.name == "frame_finished")


def calibrated(
    backend: BlenderBackend, cost: FrameCost, root: Path, threads: int, home: Path
) -> FrameCost:
    """``cost`` with its samples scaled so that a frame takes about ``cost.seconds`` here."""
    if cost.seconds is None:
        return cost
    probe = make_scene(backend, root / f"probe-{backend.kind}-{cost.name}.blend", cost, home)
    took = frame_seconds(backend, probe, root / f"probe-{backend.kind}-{cost.name}", threads, home)
    samples = max(1, round(cost.samples * cost.seconds / took))
    return replace(cost, samples=samples)


def time_bare(backend: BlenderBackend, scene: Path, out: Path, threads: int, home: Path) -> float:
    """Wall time of Blender alone rendering every frame of ``scene`` into ``out``."""
    if backend.kind == "executable":
        argv = [backend.path, "-b", "--factory-startup", "--disable-autoexec", str(scene)]
        argv += ["-o", f"{out}/frame_######", "-t", str(threads), "-a"]
    else:
        argv = [backend.path, "-c", BARE_BPY, str(scene), str(out), str(threads)]
    started = time.perf_counter()
    subprocess.run(argv, env=blender_env(home), capture_output=True, check=True, timeout=1800)
    return time.perf_counter() - started


@contextmanager
def running_runner(
    manager: Manager, root: Path, name: str, backend: BlenderBackend, threads: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real runner process (``framefarm runner``), registered and waiting for work."""
    argv = [sys.executable, "-m", "framefarm", "runner", "--manager", manager.url]
    argv += ["--api-key", manager.runner_key, "--name", name, "--no-tui"]
    argv += ["--workdir", str(root / name), "--threads", str(threads), "--blender", backend.path]
    with open(root / f"{name}.log", "ab") as log:
        process = subprocess.Popen([*argv, *extra], stdout=log, stderr=subprocess.STDOUT)
    try:
        with make_client(manager.url, manager.user_key) as client:
            deadline = time.monotonic() + 120
            while not any(
                r["name"] == name and r["status"] != "offline"
                for r in client.get("/api/admin/runners").json()
            ):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"runner {name} did not register; see {root}/{name}.log")
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def time_farm(manager: Manager, scene: Path, frames: int, settings: dict[str, object]) -> float:
    """Wall time from submitting the job to the manager recording it completed.

    The end is the job's ``finished_at`` as the manager wrote it, read once the job is done,
    so the benchmark can ask about the job rarely: asking every 20 ms took a quarter of a
    core from the render (each request costs the manager a few ms of CPU).
    """
    with make_client(manager.url, manager.user_key) as client:
        started = datetime.now(UTC)
        job = submit_blend(client, scene, frames=f"1-{frames}", settings=settings or None)
        while True:
            response = client.get(f"/api/jobs/{job['id']}/status")
            if response.status_code == 200:
                break
            time.sleep(0.25)
        finished = client.get(f"/api/jobs/{job['id']}").json()["finished_at"]
    status = response.json()
    if not status.get("succeeded"):
        raise RuntimeError(f"job {job['id']} did not complete: {status}")
    return (datetime.fromisoformat(finished) - started).total_seconds()


def farm_cells(farm: dict[bool, float], sessions: bool, bare: float) -> list[str]:
    if sessions not in farm:
        return ["—", "—"]
    return [f"{farm[sessions]:.1f} s", f"{farm[sessions] / bare:.2f}"]


def backends_by_name(names: list[str]) -> dict[str, BlenderBackend]:
    found = {}
    for name in names:
        path = sys.executable if name == "bpy" else shutil.which("blender") or "blender"
        found[name] = detect_backend(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,1s,5s", help=f"of {', '.join(FRAME_COSTS)}")
    parser.add_argument("--backends", default="bpy,executable")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sessions", default="on,off", help="farm runs: on, off or both")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="bare and farm-with-sessions runs per row, alternating; the table shows medians",
    )
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="keep the listed samples instead of scaling them to about 1 s and 5 s a frame",
    )
    args = parser.parse_args()
    modes = [part == "on" for part in args.sessions.split(",")]
    console = Console()
    backends = backends_by_name(args.backends.split(","))
    root = Path(tempfile.mkdtemp(prefix="framefarm-overhead-bench-"))
    home = root / "home"
    table = Table(title=f"Farm overhead, one runner, {args.threads} threads, 1 frame per task")
    for column in (
        "frames",
        "backend",
        "bare",
        "per frame",
        "farm, sessions",
        "ratio",
        "farm, no sessions",
        "ratio",
    ):
        table.add_column(column, justify="right")
    try:
        with running_manager(root / "manager") as manager:
            for kind, backend in backends.items():
                for size in args.sizes.split(","):
                    cost = FRAME_COSTS[size]
                    if args.calibrate:
                        cost = calibrated(backend, cost, root, args.threads, home)
                    scene = make_scene(backend, root / f"{kind}-{size}.blend", cost, home)
                    bares: list[float] = []
                    farms: dict[bool, list[float]] = {mode: [] for mode in modes}
                    for repeat in range(args.repeats):
                        # Alternating which goes first evens out a machine whose speed drifts.
                        order = ("bare", "farm") if repeat % 2 == 0 else ("farm", "bare")
                        for which in order:
                            if which == "bare":
                                out = root / f"bare-{kind}-{size}-{repeat}"
                                bares.append(time_bare(backend, scene, out, args.threads, home))
                                continue
                            # Without sessions (only to show the gain) once: it is slow.
                            for sessions in modes if repeat == 0 else [m for m in modes if m]:
                                extra = () if sessions else ("--no-sessions",)
                                name = f"{kind}-{size}-{'on' if sessions else 'off'}-{repeat}"
                                with running_runner(
                                    manager, root, name, backend, args.threads, *extra
                                ):
                                    farms[sessions].append(
                                        time_farm(manager, scene, cost.frames, {})
                                    )
                    bare = statistics.median(bares)
                    farm = {
                        mode: statistics.median(times) for mode, times in farms.items() if times
                    }
                    console.log(f"{cost.frames} {size} frames, {kind}: bare {bares}, farm {farms}")
                    table.add_row(
                        f"{cost.frames} × {size} ({cost.size}², {cost.samples} spp)",
                        kind,
                        f"{bare:.1f} s",
                        f"{bare / cost.frames:.2f} s",
                        *farm_cells(farm, True, bare),
                        *farm_cells(farm, False, bare),
                    )
        console.print(table)
        console.print(f"load average: {os.getloadavg()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
