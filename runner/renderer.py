"""How a render task reaches Blender: a request in, events out, one interface.

``ProcessRenderer`` starts one Blender process per task (the only kind today). A renderer
that keeps Blender running with the scene loaded across tasks implements the same
``render`` and is handed out by ``TaskContext.renderer_for_job`` instead; the render command
does not change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runner.blender import (
    BlenderBackend,
    RenderEvent,
    RenderResult,
    blender_env,
    build_render_argv,
    pinned,
    run_render,
)
from runner.devices import DeviceChoice


@dataclass(frozen=True)
class RenderRequest:
    blend_file: Path
    output_dir: Path
    frames: list[int]
    scene: str | None
    device: DeviceChoice
    threads: int | None
    files_dir: Path
    blender_home: Path
    allow_scripts: bool = False  # the scene's own Python runs: only when its job type says so


class Renderer(Protocol):
    backend: BlenderBackend

    def render(
        self,
        request: RenderRequest,
        *,
        on_event: Callable[[RenderEvent], None],
        on_output_line: Callable[[str], None],
        stop: threading.Event,
    ) -> RenderResult: ...


class ProcessRenderer:
    """A fresh Blender process for every task: nothing carries over between tasks."""

    def __init__(self, backend: BlenderBackend) -> None:
        self.backend = backend

    def render(
        self,
        request: RenderRequest,
        *,
        on_event: Callable[[RenderEvent], None],
        on_output_line: Callable[[str], None],
        stop: threading.Event,
    ) -> RenderResult:
        argv = build_render_argv(
            self.backend,
            blend_file=request.blend_file,
            output_dir=request.output_dir,
            frames=request.frames,
            scene=request.scene,
            threads=request.threads,
            device=request.device.device_type,
            device_ids=request.device.ids,
            allow_scripts=request.allow_scripts,
        )
        return run_render(
            pinned(argv, request.device.cpus),
            env=blender_env(request.blender_home),
            on_event=on_event,
            on_output_line=on_output_line,
            stop=stop,
            cwd=request.files_dir,
        )
