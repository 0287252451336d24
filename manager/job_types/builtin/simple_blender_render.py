"""simple-blender-render: EXR frames from Blender, chunked into tasks; optionally one HDR
video encoded from those frames once every render task completed."""

import re

from shared.frames import chunk_frames, format_frames, parse_frame_range

DELIVERABLES = ["EXR", "EXR_264_MP4", "EXR_AV1_MP4", "EXR_VP9_WEBM"]
EXTENSIONS = {"EXR_264_MP4": "mp4", "EXR_AV1_MP4": "mp4", "EXR_VP9_WEBM": "webm"}

JOB_TYPE = {
    "label": "Simple Blender render",
    "description": "Render frames to EXR; optionally encode an HDR (HLG, 10-bit) video from them.",
    "settings": [
        {
            "key": "frames",
            "type": "string",
            "required": True,
            "eval": "f'{C.scene.frame_start}-{C.scene.frame_end}'",
            "eval_toggle": True,
            "description": "frame range, e.g. 1-250 or 1-10,20-30",
        },
        {
            "key": "chunk_size",
            "type": "int32",
            "description": "frames per render task (default: the farm's frames-per-render-task)",
        },
        {
            "key": "scene",
            "type": "string",
            "eval": "C.scene.name",
            "description": "scene to render (default: the file's active scene)",
        },
        {
            "key": "deliverable",
            "type": "string",
            "default": "EXR",
            "choices": DELIVERABLES,
            "description": "EXR frames only, or also an HDR video encoded from them",
        },
        {
            "key": "fps",
            "type": "string",
            "eval": "f'{C.scene.render.fps / C.scene.render.fps_base:.6g}'",
            "description": "video frame rate: 24, 25, 29.97 or an exact fraction like 30000/1001",
        },
        {
            "key": "bitrate_kbps",
            "type": "int32",
            "description": "video bitrate (default: from resolution and frame rate)",
            "visible": "submission",
        },
        {
            "key": "sessions",
            "type": "bool",
            "default": True,
            "description": "keep Blender running with the scene loaded between this job's "
            "frames (off: a fresh Blender for every task)",
        },
        {"key": "blend_file", "type": "string", "subtype": "file_path", "visible": "hidden"},
    ],
}


def compile_job(job):
    settings = job.settings
    frames = parse_frame_range(settings["frames"])
    chunk = settings.get("chunk_size") or job.metadata["frames_per_render_task"]
    if chunk < 1:
        raise ValueError("chunk_size must be at least 1")
    blend_file = settings.get("blend_file") or job.metadata["blend_file"]
    renders = []
    for frames_of_task in chunk_frames(frames, chunk):
        task = job.add_task(
            f"render-{format_frames(frames_of_task)}", "blender", frames=frames_of_task
        )
        task.add_command(
            "blender-render",
            blend_file=blend_file,
            frames=frames_of_task,
            scene=settings.get("scene"),
            format="OPEN_EXR",
            sessions=settings.get("sessions", True) is not False,
        )
        renders.append(task)
    deliverable = settings["deliverable"]
    if deliverable == "EXR":
        return
    fps = str(settings.get("fps") or "")
    if not re.fullmatch(r"\d+(\.\d+)?(/\d+)?", fps):
        raise ValueError(
            f"the {deliverable} deliverable needs the fps setting, like 24, 29.97 or 30000/1001"
        )
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", job.name).strip("._") or "video"
    encode = job.add_task("encode-video", "ffmpeg", capability=f"encode:{deliverable}")
    encode.add_command(
        "frames-to-video",
        deliverable=deliverable,
        fps=fps,
        frames=frames,
        bitrate_kbps=settings.get("bitrate_kbps"),
        output_name=f"{stem}.{EXTENSIONS[deliverable]}",
        preview_name=f"{stem}.preview.mp4",
    )
    encode.depends_on(*renders)
