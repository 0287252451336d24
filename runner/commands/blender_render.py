"""blender-render: EXR frames with Blender, each uploaded as soon as it is saved."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runner.blender import RenderEvent, blender_env, build_render_argv, check_render, run_render
from runner.commands import CommandFailed, TaskContext, command, param

log = logging.getLogger("framefarm.runner")


@command("blender-render")
def blender_render(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    if ctx.backend is None:
        raise CommandFailed("this runner has no Blender")
    frames = [int(f) for f in param(parameters, "frames", list, command_name="blender-render")]
    blend = param(parameters, "blend_file", str, command_name="blender-render")
    files = ctx.files_dir()
    argv = build_render_argv(
        ctx.backend,
        blend_file=files / blend,
        output_dir=ctx.out_dir(),
        frames=frames,
        scene=parameters.get("scene"),
        threads=ctx.threads,
    )
    uploads: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as uploader:

        def on_event(event: RenderEvent) -> None:
            if event.name == "saved" and event.frame is not None:
                path = Path(str(event.data["path"]))
                uploads.append(
                    uploader.submit(
                        ctx.client.upload_output,
                        ctx.task_id,
                        path,
                        name=path.name,
                        frame=event.frame,
                    )
                )
            elif event.name == "frame_finished":
                seconds = float(event.data.get("seconds", 0.0))
                log.info("task %s: frame %s rendered in %.2f s", ctx.task_id, event.frame, seconds)
                ctx.progress.frame_finished(f"rendered frame {event.frame}")
            elif event.name == "error":
                log.error("Blender: %s", event.data.get("message"))

        ctx.progress.send(activity=f"rendering frames {ctx.task['name']} with {ctx.backend.label}")
        result = run_render(
            argv,
            env=blender_env(ctx.workspace.blender_home),
            on_event=on_event,
            on_output_line=ctx.progress.log_line,
            stop=ctx.stop,
            cwd=files,
        )
        if ctx.stop.is_set():
            return  # the task loop reports why it stopped
        check_render(result, frames)
        for upload in uploads:
            upload.result()
    ctx.progress.send(activity="all frames uploaded")
