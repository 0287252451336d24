"""Cycles render devices: probe what Blender sees, and choose what the runner renders on.

The choice is explicit and never falls back: ``--force-cpu-rendering`` renders on the CPU;
``--gpu TYPE[:ID,ID]`` demands that GPU type (and those devices) and the runner refuses to
start without it; with neither, the best GPU type found is used, else the CPU. render.py
checks again inside Blender and fails the render rather than fall back silently.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from blender_scripts import SCRIPTS_DIR
from runner.blender import (
    DETECT_TIMEOUT_S,
    BlenderBackend,
    BlenderError,
    blender_env,
    build_script_argv,
    parse_event_line,
)

PROBE_SCRIPT = SCRIPTS_DIR / "probe_devices.py"
GPU_TYPES = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
"""Best first: OptiX is faster than CUDA on the same NVIDIA card."""
DEVICE_TYPES = ("CPU", *GPU_TYPES)


class DeviceUnavailable(BlenderError):
    """The device asked for is not there; the message lists what is."""


@dataclass(frozen=True)
class CyclesDevice:
    type: str
    name: str
    id: str

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}"


@dataclass(frozen=True)
class DeviceChoice:
    """What a render uses: a Cycles device type and, for a GPU, which devices (all if none)."""

    device_type: str = "CPU"
    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        if self.device_type == "CPU":
            return "CPU"
        return f"{self.device_type} ({', '.join(self.names or self.ids) or 'all'})"


def probe_devices(backend: BlenderBackend, home: Path | None = None) -> list[CyclesDevice]:
    """Ask Blender which Cycles devices it can render on (about one second)."""
    argv = build_script_argv(backend, PROBE_SCRIPT, [])
    with tempfile.TemporaryDirectory(prefix="framefarm-probe-") as temp:
        done = subprocess.run(
            argv,
            env=blender_env(home or Path(temp)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=DETECT_TIMEOUT_S,
            check=False,
        )
    for line in done.stdout.splitlines():
        event = parse_event_line(line)
        if event is not None and event.name == "devices":
            return [
                CyclesDevice(str(d["type"]), str(d["name"]), str(d["id"]))
                for d in event.data.get("devices", [])
            ]
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
    raise DeviceUnavailable(f"cannot list Cycles devices with {backend.label}: {tail}")


def parse_gpu_option(text: str) -> tuple[str, tuple[str, ...]]:
    """``CUDA`` or ``OPTIX:0,1`` (indexes among that type's devices, or device ids)."""
    kind, _, ids = text.partition(":")
    kind = kind.strip().upper()
    if kind not in GPU_TYPES:
        raise DeviceUnavailable(
            f"--gpu {text!r}: unknown GPU type; use one of {', '.join(GPU_TYPES)}, "
            "optionally with device numbers, e.g. --gpu OPTIX:0,1"
        )
    return kind, tuple(part.strip() for part in ids.split(",") if part.strip())


def choose_device(
    devices: list[CyclesDevice], *, force_cpu: bool = False, gpu: str | None = None
) -> DeviceChoice:
    """The device to render on, or DeviceUnavailable naming what was found instead."""
    if force_cpu and gpu:
        raise DeviceUnavailable("give --gpu or --force-cpu-rendering, not both")
    if force_cpu:
        return DeviceChoice("CPU")
    found = ", ".join(d.label for d in devices) or "none"
    if gpu is None:
        for kind in GPU_TYPES:
            of_kind = [d for d in devices if d.type == kind]
            if of_kind:
                return DeviceChoice(
                    kind, tuple(d.id for d in of_kind), tuple(d.name for d in of_kind)
                )
        return DeviceChoice("CPU")
    kind, wanted = parse_gpu_option(gpu)
    of_kind = [d for d in devices if d.type == kind]
    if not of_kind:
        raise DeviceUnavailable(
            f"--gpu {gpu}: Blender found no {kind} device (found: {found}); check the GPU "
            "driver, or render on the CPU with --force-cpu-rendering"
        )
    if not wanted:
        return DeviceChoice(kind, tuple(d.id for d in of_kind), tuple(d.name for d in of_kind))
    chosen: list[CyclesDevice] = []
    for want in wanted:
        match = [d for d in of_kind if d.id == want]
        if not match and want.isdigit() and int(want) < len(of_kind):
            match = [of_kind[int(want)]]
        if not match:
            raise DeviceUnavailable(
                f"--gpu {gpu}: no {kind} device {want!r}; {kind} devices: "
                + ", ".join(f"{i}: {d.name} ({d.id})" for i, d in enumerate(of_kind))
            )
        chosen += match
    return DeviceChoice(kind, tuple(d.id for d in chosen), tuple(d.name for d in chosen))


def split_for_slots(choice: DeviceChoice, slots: int) -> list[DeviceChoice]:
    """One choice per slot: with several GPUs and slots, each slot gets its own GPUs."""
    if choice.device_type == "CPU" or slots <= 1 or len(choice.ids) < 2:
        return [choice] * max(1, slots)
    per_slot: list[DeviceChoice] = []
    for slot in range(slots):
        ids = choice.ids[slot::slots] or (choice.ids[slot % len(choice.ids)],)
        names = choice.names[slot::slots] if choice.names else ()
        per_slot.append(DeviceChoice(choice.device_type, ids, names))
    return per_slot
