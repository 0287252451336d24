"""blender-render: EXR frames with Blender, each uploaded as soon as it is saved."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from runner.blender import RenderEvent, check_render
from runner.commands import BadParameters, TaskContext, command, param
from runner.renderer import RenderRequest

log = logging.getLogger("framefarm.runner")


@command("blender-render")
def blender_render(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    frames = [int(f) for f in param(parameters, "frames", list, command_name="blender-render")]
    blend = param(parameters, "blend_file", str, command_name="blender-render")
    allow_scripts = parameters.get("allow_scripts", False)
    if not isinstance(allow_scripts, bool):
        raise BadParameters("blender-render: parameter 'allow_scripts' must be true or false")
    renderer = ctx.renderer_for_job(sessions=parameters.get("sessions") is not False)
    if allow_scripts:
        log.info("task %s: its job type lets the scene's Python scripts run", ctx.task_id)
    files = ctx.files_dir()
    request = RenderRequest(
        blend_file=files / blend,
        output_dir=ctx.out_dir(),
        frames=frames,
        scene=parameters.get("scene"),
        device=ctx.device,
        threads=ctx.threads,
        files_dir=files,
        blender_home=ctx.workspace.blender_home,
        allow_scripts=allow_scripts,
    )

    def on_event(event: RenderEvent) -> None:
        ctx.board.render_event(ctx.slot, event.name, event.data)
        if event.name == "ready":
            log.info(
                "task %s: Blender %s renders on %s",
                ctx.task_id,
                event.data.get("blender_version"),
                event.data.get("device_label") or event.data.get("device"),
            )
        elif event.name == "saved" and event.frame is not None:
            path = Path(str(event.data["path"]))
            ctx.progress.reports.put_upload(ctx.task_id, path, name=path.name, frame=event.frame)
        elif event.name == "frame_finished":
            seconds = float(event.data.get("seconds", 0.0))
            log.info("task %s: frame %s rendered in %.2f s", ctx.task_id, event.frame, seconds)
            # (the task's last frame is told with the task's last report)
            last = event.frame == frames[-1]
            ctx.progress.frame_finished(f"rendered frame {event.frame}", report=not last)
        elif event.name == "error":
            log.error("Blender: %s", event.data.get("message"))

    label = renderer.backend.label
    ctx.progress.send(activity=f"rendering frames {ctx.task['name']} with {label}")
    result = renderer.render(
        request, on_event=on_event, on_output_line=ctx.progress.log_line, stop=ctx.stop
    )
    if ctx.stop.is_set():
        return  # the task loop reports why it stopped
    check_render(result, frames)
