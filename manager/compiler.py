"""Turns a submitted render into tasks (the first built-in job type, simple-blender-render)."""

from __future__ import annotations

from typing import Any

from manager.models import Job, Task
from shared.frames import chunk_frames, format_frames
from shared.wire import TaskType

SIMPLE_BLENDER_RENDER = "simple-blender-render"


def render_command(job: Job, frames: list[int]) -> dict[str, Any]:
    return {
        "name": "blender-render",
        "parameters": {
            "blend_file": job.blend_file,
            "frames": frames,
            "scene": job.settings.get("scene"),
            "format": "OPEN_EXR",
        },
    }


def compile_render_job(job: Job, frames: list[int]) -> list[Task]:
    """One render task per chunk of ``job.chunk_size`` frames, named by its frames."""
    assert job.id is not None
    return [
        Task(
            job_id=job.id,
            name=f"render-{format_frames(chunk)}",
            type=TaskType.BLENDER,
            task_order=order,
            frames=chunk,
            commands=[render_command(job, chunk)],
        )
        for order, chunk in enumerate(chunk_frames(frames, job.chunk_size))
    ]
