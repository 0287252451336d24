"""frames-to-video: fetch the job's EXR frames, encode the HDR deliverable and an SDR preview,
and upload both as job outputs."""

from __future__ import annotations

import logging
from typing import Any

from runner.commands import CommandFailed, TaskContext, command, param
from runner.encode import EncodeError, EncodeProgress, encode_preview, encode_video

log = logging.getLogger("framefarm.runner")


@command("frames-to-video")
def frames_to_video(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    name = "frames-to-video"
    if ctx.ffmpeg is None:
        raise CommandFailed("this runner has no FFmpeg")
    deliverable = param(parameters, "deliverable", str, command_name=name)
    fps = param(parameters, "fps", str, command_name=name)
    frames = [int(f) for f in param(parameters, "frames", list, command_name=name)]
    output_name = param(parameters, "output_name", str, command_name=name)
    preview_name = parameters.get("preview_name")
    folder = ctx.out_dir()
    ctx.progress.send(activity=f"fetching {len(frames)} EXR frames")
    exrs = ctx.client.download_job_frames(ctx.job_id, frames, folder / "frames")

    def report(progress: EncodeProgress) -> None:
        if progress.frame and progress.frame % 25 == 0:
            ctx.progress.send(activity=f"encoding {deliverable}: {progress.fraction:.0%}")

    try:
        ctx.progress.send(activity=f"encoding {deliverable} (two passes)")
        result = encode_video(
            exrs,
            folder / output_name,
            deliverable=deliverable,
            fps=fps,
            bitrate_kbps=parameters.get("bitrate_kbps"),
            workdir=folder,
            ffmpeg=ctx.ffmpeg,
            on_progress=report,
            stop=ctx.stop,
        )
        ctx.progress.reports.put_upload(ctx.task_id, result.output, name=output_name, frame=None)
        log.info(
            "task %s: %s %dx%d at %s fps, %s kbit/s%s in %.1f s",
            ctx.task_id,
            deliverable,
            result.width,
            result.height,
            result.fps,
            result.bitrate_kbps,
            " with alpha matte" if result.has_matte else "",
            result.seconds,
        )
        if preview_name:
            preview = encode_preview(
                exrs,
                folder / str(preview_name),
                fps=fps,
                workdir=folder,
                ffmpeg=ctx.ffmpeg,
                stop=ctx.stop,
            )
            ctx.progress.reports.put_upload(
                ctx.task_id, preview.output, name=str(preview_name), frame=None
            )
    except EncodeError as exc:
        if ctx.stop.is_set():
            return
        raise CommandFailed(f"{deliverable}: {exc}") from exc
    ctx.progress.send(activity=f"{output_name} uploaded")
