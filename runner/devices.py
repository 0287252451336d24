"""Cycles render devices: probe what Blender sees, and choose what the runner renders on.

The choice is explicit and never falls back: ``--force-cpu-rendering`` renders on the CPU;
``--gpu TYPE[:ID,ID]`` demands that GPU type (and those devices) and the runner refuses to
start without it; with neither, the best GPU type found is used, else the CPU. render.py
checks again inside Blender and fails the render rather than fall back silently.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    cpus: tuple[int, ...] = ()
    """The CPUs Blender runs on for this slot (its share of ``--cpus``); () anywhere."""

    @property
    def label(self) -> str:
        pinned = f" on CPUs {format_cpu_list(self.cpus)}" if self.cpus else ""
        if self.device_type == "CPU":
            return f"CPU{pinned}"
        return f"{self.device_type} ({', '.join(self.names or self.ids) or 'all'}){pinned}"


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


def split_for_slots(
    choice: DeviceChoice, slots: int, cpus: Sequence[int] = ()
) -> list[DeviceChoice]:
    """One choice per slot: with several GPUs and slots, each slot gets its own GPUs, and
    with ``cpus`` each slot its share of them (``share_cpus``)."""
    shares = share_cpus(cpus, max(1, slots))
    if choice.device_type == "CPU" or slots <= 1 or len(choice.ids) < 2:
        return [replace(choice, cpus=share) for share in shares]
    per_slot: list[DeviceChoice] = []
    for slot in range(slots):
        ids = choice.ids[slot::slots] or (choice.ids[slot % len(choice.ids)],)
        names = choice.names[slot::slots] if choice.names else ()
        per_slot.append(DeviceChoice(choice.device_type, ids, names, shares[slot]))
    return per_slot


def share_cpus(cpus: Sequence[int], slots: int) -> list[tuple[int, ...]]:
    """``cpus`` cut into ``slots`` runs of neighbours, as even as they go; none (every slot
    runs anywhere) when there are fewer CPUs than slots."""
    if len(cpus) < slots:
        return [()] * slots
    size, extra = divmod(len(cpus), slots)
    shares, start = [], 0
    for slot in range(slots):
        end = start + size + (slot < extra)
        shares.append(tuple(cpus[start:end]))
        start = end
    return shares


def format_cpu_list(cpus: Sequence[int]) -> str:
    """Sorted CPUs written as ``parse_cpu_list`` reads them: ``0-3,8``."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``0-3,8,10-11`` (as ``taskset --cpu-list`` and Linux write them) as sorted CPUs."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (write it like 0-3,8)")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"not a CPU list: {text!r} ({part.strip()} runs backwards)")
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))
