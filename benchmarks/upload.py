"""Upload: submit a ~1 GiB project, then again with one texture changed; the manager's memory.

    python -m benchmarks.upload [--size-mb 1024] [--textures 8] [--keep]

Builds a project on disk: ``shots/shot.blend`` (saved by bpy) whose planes use
``textures/plate_N.png`` through image nodes, by relative paths, so blender-asset-tracer
follows them as dependencies. The textures are real PNGs of random pixels stored without
compression (nothing on the way can shrink them), ``--size-mb`` MiB in all. Submits the
project to a real manager (uvicorn, SQLite, its own process) the way the add-on does:
``addon.submit_flow.SubmitFlow`` packs with BAT, hashes every file, asks
``POST /api/blobs/missing`` and streams only the missing blobs with ``PUT /api/blobs/{sha}``,
then posts the manifest. Then rewrites one texture with other pixels (same size) and submits
again. For each submission: wall time per phase, bytes the client sent and the growth of the
manager's blob store, and the resident memory (VmRSS, sampled every 50 ms, and VmHWM) of the
manager and of this process (the client). The project (``--size-mb`` on disk, and as much
again in the manager's storage) is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from addon import client
from addon.submit_flow import Phase, SubmitFlow, SubmitRequest
from benchmarks.common import running_manager
from runner.blender import blender_env

MIB = 1024 * 1024
PNG_WIDTH = 4096  # RGB pixels a row: 12 KiB
ROWS_PER_WRITE = 256  # 3 MiB of pixels at a time
JOB = {"type": "simple-blender-render", "settings": {"frames": "1"}, "name": "upload-bench"}

WRITE_BLEND = """
import sys
import bpy
blend, textures = sys.argv[1], sys.argv[2:]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=blend)  # saved first, so the paths can be relative
scene = bpy.context.scene
for index, texture in enumerate(textures):
    image = bpy.data.images.load(texture)
    image.filepath = bpy.path.relpath(texture)
    mat = bpy.data.materials.new(f"Plate{index}")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    node = nodes.new("ShaderNodeTexImage")
    node.image = image
    shader = nodes.get("Principled BSDF")
    mat.node_tree.links.new(node.outputs["Color"], shader.inputs["Base Color"])
    mesh = bpy.data.meshes.new(f"Plate{index}")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], [], [(0, 1, 2, 3)])
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(f"Plate{index}", mesh)
    obj.location.x = 1.5 * index
    scene.collection.objects.link(obj)
bpy.ops.wm.save_as_mainfile(filepath=blend)
"""


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_noise_png(path: Path, size_bytes: int, seed: int) -> int:
    """An 8-bit RGB PNG of random pixels, deflate level 0, about ``size_bytes``; its size."""
    row_bytes = 1 + 3 * PNG_WIDTH  # a filter byte (none) and the pixels
    height = max(1, size_bytes // row_bytes)
    rng = np.random.default_rng(seed)
    deflate = zlib.compressobj(level=0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", PNG_WIDTH, height, 8, 2, 0, 0, 0)))
        for top in range(0, height, ROWS_PER_WRITE):
            rows = rng.integers(0, 256, (min(ROWS_PER_WRITE, height - top), row_bytes), np.uint8)
            rows[:, 0] = 0
            f.write(_png_chunk(b"IDAT", deflate.compress(rows.tobytes())))
        f.write(_png_chunk(b"IDAT", deflate.flush()))
        f.write(_png_chunk(b"IEND", b""))
    return path.stat().st_size


def build_project(root: Path, total_mib: int, textures: int) -> Path:
    """``root/shots/shot.blend`` using ``root/textures/plate_N.png``; the .blend's path."""
    (root / "textures").mkdir(parents=True)
    (root / "shots").mkdir()
    paths = [root / "textures" / f"plate_{index}.png" for index in range(textures)]
    for index, path in enumerate(paths):
        write_noise_png(path, total_mib * MIB // textures, seed=index)
    blend = root / "shots" / "shot.blend"
    subprocess.run(
        [sys.executable, "-c", WRITE_BLEND, str(blend), *map(str, paths)],
        check=True,
        env=blender_env(root.parent / "home"),
        capture_output=True,
        timeout=300,
    )
    return blend


def resident_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A memory figure of ``/proc/<pid>/status`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LookupError(f"no {field_name} in /proc/{pid}/status")


@dataclass
class MemorySampler:
    """The resident memory of some processes while a block runs, from a thread.

    VmRSS is read every ``period`` seconds; the peak also takes VmHWM (the kernel's own
    high-water mark) when it rose during the block, which catches a spike between samples.
    """

    pids: dict[str, int]
    period: float = 0.05
    baselines: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def growth_kib(self, name: str) -> int:
        return self.peaks[name] - self.baselines[name]

    @contextmanager
    def running(self) -> Iterator[MemorySampler]:
        self._stop.clear()
        self.baselines = {name: resident_kib(pid) for name, pid in self.pids.items()}
        high_water = {name: resident_kib(pid, "VmHWM") for name, pid in self.pids.items()}
        self.peaks = dict(self.baselines)
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._sample()
            for name, pid in self.pids.items():
                hwm = resident_kib(pid, "VmHWM")
                if hwm > high_water[name]:
                    self.peaks[name] = max(self.peaks[name], hwm)

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            self.peaks[name] = max(self.peaks[name], resident_kib(pid))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()


@dataclass
class Submission:
    label: str
    wall: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    files: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    stored_growth: int = 0
    rss: dict[str, tuple[int, int]] = field(default_factory=dict)
    """name → (baseline, peak) in KiB, from ``MemorySampler``."""


def stored_bytes(storage: Path) -> int:
    return sum(p.stat().st_size for p in (storage / "blobs").rglob("*") if p.is_file())


def submit(
    label: str,
    address: client.ManagerAddress,
    blend: Path,
    staging: Path,
    storage: Path,
    pids: dict[str, int],
) -> Submission:
    result = Submission(label)
    before = stored_bytes(storage)
    flow = SubmitFlow(SubmitRequest(address, blend, dict(JOB), staging))
    sampler = MemorySampler(pids)
    with sampler.running():
        started = phase_started = time.perf_counter()
        phase = flow.phase
        while flow.step():
            if flow.phase != phase:
                now = time.perf_counter()
                result.phases[phase.value] = now - phase_started
                phase, phase_started = flow.phase, now
        result.wall = time.perf_counter() - started
        result.phases[phase.value] = result.wall - sum(result.phases.values())
    if flow.phase != Phase.DONE:
        raise RuntimeError(f"{label}: the submission ended {flow.phase.value}: {flow.message}")
    assert flow.pack is not None
    result.files = len(flow.pack.files)
    result.uploaded_files = len(flow.uploaded_files)
    result.uploaded_bytes = flow.uploaded_bytes
    result.stored_growth = stored_bytes(storage) - before
    result.rss = {name: (sampler.baselines[name], sampler.peaks[name]) for name in pids}
    return result


def mib(n_bytes: float) -> str:
    return f"{n_bytes / MIB:,.1f} MiB"


def report(console: Console, results: list[Submission], project_bytes: int, textures: int) -> None:
    title = f"Upload: a {mib(project_bytes)} project (1 .blend + {textures} textures)"
    table = Table(title=title)
    columns = ("submission", "wall", "pack/hash/ask/send/job", "files", "sent", "stored")
    for column in (*columns, "manager RSS", "client RSS"):
        table.add_column(column, justify="right")
    for r in results:
        parts = (Phase.PACKING, Phase.HASHING, Phase.CHECKING, Phase.UPLOADING, Phase.SUBMITTING)
        rss = {
            name: f"{base / 1024:.0f}→{peak / 1024:.0f} MiB (+{(peak - base) / 1024:.1f})"
            for name, (base, peak) in r.rss.items()
        }
        table.add_row(
            r.label,
            f"{r.wall:.1f} s",
            "/".join(f"{r.phases.get(p.value, 0.0):.1f}" for p in parts) + " s",
            f"{r.uploaded_files}/{r.files}",
            mib(r.uploaded_bytes),
            mib(r.stored_growth),
            rss["manager"],
            rss["client"],
        )
    console.print(table)


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="textures in all, MiB")
    parser.add_argument("--textures", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    console = Console()
    root = Path(tempfile.mkdtemp(prefix="framefarm-upload-bench-"))
    try:
        started = time.perf_counter()
        blend = build_project(root / "project", args.size_mb, args.textures)
        project_bytes = sum(p.stat().st_size for p in (root / "project").rglob("*.*"))
        console.log(f"project: {mib(project_bytes)} in {time.perf_counter() - started:.1f} s")
        load_start = load_average()
        with running_manager(root / "manager") as manager:
            address = client.ManagerAddress(manager.url, manager.user_key)
            pids = {"manager": manager.process.pid, "client": os.getpid()}
            storage = root / "manager" / "storage"
            results = [submit("whole project", address, blend, root / "staging", storage, pids)]
            console.log(f"first submission: {results[0].phases}")
            changed = root / "project" / "textures" / "plate_0.png"
            write_noise_png(changed, changed.stat().st_size, seed=args.textures + 1)
            results.append(
                submit("1 texture changed", address, blend, root / "staging", storage, pids)
            )
            console.log(f"second submission: {results[1].phases}")
        report(console, results, project_bytes, args.textures)
        console.print(
            f"load average (1 min): {load_start} at the start, {load_average()} at the end"
        )
    finally:
        if args.keep:
            console.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
