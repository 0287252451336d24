"""Render frames of a .blend to EXR and report progress as JSON events, one per line.

Runs inside Blender (bpy + stdlib only), on Blender 3.4 up to bpy 5.0:

    blender -b --factory-startup --disable-autoexec scene.blend --python-exit-code 1 \\
        -P render.py -- --output-dir /out --frames 1,2,3
    python render.py --blend scene.blend --output-dir /out --frames 1,2,3   # bpy module

The file's own scripts (Python drivers, registered text blocks) stay off unless the job type
allows them: then the executable runs with ``--enable-autoexec`` instead, and the bpy module
opens the file with ``--allow-scripts``.

Every event is printed as ``@framefarm {json}`` on its own line and flushed at once:
ready, then per frame frame_started, samples (when Blender reports them), saved,
frame_finished, and finally done; error on any failure. Exit status: 0 when every frame
was saved, 2 for bad arguments (or an unsupported device), 1 for any other failure.

Only the output (path, EXR RGBA half ZIP), the Cycles device and optionally the thread
count are changed, so frames match a plain ``blender -b scene.blend -a`` pixel for pixel.
"""

import argparse
import json
import os
import re
import sys
import time

import bpy

EVENT_PREFIX = "@framefarm "
GPU_TYPES = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
SUPPORTED_DEVICES = ("CPU", *GPU_TYPES)
SAMPLE_PATTERN = re.compile(r"\bSample (\d+)/(\d+)")


class RenderScriptError(Exception):
    """A failure reported as an error event; exit_code is the process exit status."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise RenderScriptError(f"{self.prog}: {message}", exit_code=2)


def emit(event, **data):
    line = EVENT_PREFIX + json.dumps({"event": event, **data}, separators=(",", ":"))
    print(line, flush=True)


def parse_frames(text):
    try:
        frames = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of frames: {text!r}"
        ) from None
    if not frames:
        raise argparse.ArgumentTypeError("no frames given")
    return frames


def parse_args(argv):
    parser = ArgumentParser(prog="render.py", description=__doc__.splitlines()[0])
    parser.add_argument("--blend", help="open this .blend first (bpy module backend)")
    add_allow_scripts(parser)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--frames", required=True, type=parse_frames, help="e.g. 1,2,3")
    parser.add_argument("--scene", help="scene to render (default: the file's active scene)")
    parser.add_argument(
        "--device", default="CPU", help=f"Cycles device type: {', '.join(SUPPORTED_DEVICES)}"
    )
    parser.add_argument("--gpu-ids", default="", help="comma-separated GPU ids (default: all)")
    parser.add_argument("--threads", type=int, help="render threads; 0 = automatic")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 0:
        parser.error("--threads must be 0 (automatic) or more")
    return args


def add_allow_scripts(parser):
    parser.add_argument(
        "--allow-scripts",
        action="store_true",
        help="let the --blend file's own scripts run (its job type allows them)",
    )


def script_args():
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


def open_blend(path, allow_scripts=False):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise RenderScriptError(f"blend file not found: {path}")
    # use_scripts=False keeps scripts inside the file from running, like --disable-autoexec;
    # True trusts them, like --enable-autoexec.
    bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=bool(allow_scripts))


def pick_scene(name):
    if name is None:
        return bpy.context.scene
    scene = bpy.data.scenes.get(name)
    if scene is None:
        known = ", ".join(sorted(s.name for s in bpy.data.scenes))
        raise RenderScriptError(f"no scene named {name!r} in the file (scenes: {known})")
    # Make it the window's scene, as `blender -S NAME` does: render.render(scene=NAME) would
    # copy the active scene's current frame over the frame set on this one.
    window = bpy.context.window
    if window is not None:
        window.scene = scene
    if bpy.context.scene != scene:
        raise RenderScriptError(f"cannot make scene {name!r} the active scene")
    return scene


def cycles_preferences():
    addon = bpy.context.preferences.addons.get("cycles")
    if addon is None:
        raise RenderScriptError("the Cycles add-on is not enabled in this Blender", exit_code=2)
    return addon.preferences


def select_gpu(device, wanted_ids):
    """Turn on exactly the wanted GPUs of ``device``; fail rather than fall back to the CPU."""
    prefs = cycles_preferences()
    try:
        prefs.compute_device_type = device
    except TypeError:
        raise RenderScriptError(
            f"this Blender cannot render on {device}; render on the CPU or another GPU type",
            exit_code=2,
        ) from None
    devices = prefs.get_devices_for_type(device)
    gpus = [d for d in devices if d.type == device]
    if not gpus:
        raise RenderScriptError(
            f"{device} was requested but Blender found no {device} device (it would "
            "silently render on the CPU); check the GPU driver or render on the CPU",
            exit_code=2,
        )
    chosen = [d for d in gpus if not wanted_ids or d.id in wanted_ids]
    missing = [i for i in wanted_ids if i not in {d.id for d in gpus}]
    if missing or not chosen:
        known = ", ".join(f"{d.name} ({d.id})" for d in gpus)
        raise RenderScriptError(f"no {device} device {missing}; found {known}", exit_code=2)
    for d in devices:
        d.use = d in chosen
    # Read back what Cycles will use: a refused setting must not turn into a CPU render.
    if prefs.compute_device_type != device or not prefs.has_active_device():
        raise RenderScriptError(f"Blender did not accept {device} as the render device")
    return f"{device} ({', '.join(d.name for d in chosen)})"


def configure(scene, args):
    device = args.device.upper()
    if device not in SUPPORTED_DEVICES:
        raise RenderScriptError(
            f"device {args.device!r} is not supported; use one of: {', '.join(SUPPORTED_DEVICES)}",
            exit_code=2,
        )
    label = "CPU"
    if device != "CPU":
        wanted = [part for part in args.gpu_ids.split(",") if part]
        label = select_gpu(device, wanted)
    if scene.render.engine == "CYCLES":
        scene.cycles.device = "CPU" if device == "CPU" else "GPU"
    if args.threads is not None:
        scene.render.threads_mode = "AUTO" if args.threads == 0 else "FIXED"
        if args.threads:
            scene.render.threads = args.threads

    image = scene.render.image_settings
    if hasattr(image, "media_type"):  # Blender 5.0 groups file formats by media type
        image.media_type = "IMAGE"
    image.file_format = "OPEN_EXR"
    image.color_mode = "RGBA"
    image.color_depth = "16"
    image.exr_codec = "ZIP"
    scene.render.use_file_extension = True
    scene.render.filepath = os.path.join(os.path.abspath(args.output_dir), "frame_######")
    return device, label


def render_resolution(scene):
    render = scene.render
    return [
        render.resolution_x * render.resolution_percentage // 100,
        render.resolution_y * render.resolution_percentage // 100,
    ]


class FrameProgress:
    """What the render handlers learn about the frame being rendered."""

    def __init__(self):
        self.frame = None
        self.path = None
        self.last_sample = 0  # "Sample 0/N" only means that sampling began
        self.saved = False
        self.canceled = False

    def start(self, frame, path):
        self.frame, self.path = frame, path
        self.last_sample, self.saved, self.canceled = 0, False, False

    def report_saved(self):
        if self.saved or not os.path.isfile(self.path):
            return
        self.saved = True
        emit("saved", frame=self.frame, path=self.path)

    # bpy.app.handlers callbacks: Blender passes (scene, depsgraph) or (stats, None).
    def on_render_stats(self, stats, *_):
        # Blender 3.4 passes None here (its stats go to stdout as "Fra:" lines only).
        match = SAMPLE_PATTERN.search(stats) if isinstance(stats, str) else None
        if match is None or self.frame is None:
            return
        sample, samples = int(match.group(1)), int(match.group(2))
        if sample > self.last_sample:
            self.last_sample = sample
            emit("samples", frame=self.frame, sample=sample, samples=samples)

    def on_render_write(self, *_):
        self.report_saved()

    def on_render_cancel(self, *_):
        self.canceled = True


class Handlers:
    """Adds handlers and removes every one of them again (bpy 4.5 hangs at exit otherwise)."""

    def __init__(self, progress):
        self.added = [
            ("render_stats", progress.on_render_stats),
            ("render_write", progress.on_render_write),
            ("render_cancel", progress.on_render_cancel),
        ]
        self.added = [(name, fn) for name, fn in self.added if hasattr(bpy.app.handlers, name)]

    def __enter__(self):
        for name, fn in self.added:
            getattr(bpy.app.handlers, name).append(fn)
        return self

    def __exit__(self, *_):
        for name, fn in self.added:
            handlers = getattr(bpy.app.handlers, name)
            while fn in handlers:
                handlers.remove(fn)


def render_frame(scene, frame, progress):
    hashed = scene.render.filepath
    path = scene.render.frame_path(frame=frame)
    progress.start(frame, path)
    emit("frame_started", frame=frame)
    started = time.monotonic()
    scene.frame_set(frame)
    # A still render writes its filepath as given (no "#" substitution), so point it at
    # this frame's file; the pixels are the same as an animation render of the frame.
    scene.render.filepath = os.path.splitext(path)[0]
    try:
        result = bpy.ops.render.render(write_still=True)
    except RuntimeError as exc:
        raise RenderScriptError(f"frame {frame} failed to render: {exc}".strip()) from exc
    finally:
        scene.render.filepath = hashed
    if progress.canceled or "FINISHED" not in result:
        raise RenderScriptError(f"frame {frame} was canceled ({', '.join(sorted(result))})")
    progress.report_saved()  # when render_write did not fire
    if not progress.saved:
        raise RenderScriptError(f"frame {frame} rendered but {path} was not written")
    emit("frame_finished", frame=frame, seconds=round(time.monotonic() - started, 3))


def run(argv):
    args = parse_args(argv)
    if args.blend:
        open_blend(args.blend, args.allow_scripts)
    scene = pick_scene(args.scene)
    device, device_label = configure(scene, args)
    os.makedirs(os.path.abspath(args.output_dir), exist_ok=True)
    emit(
        "ready",
        blender_version=".".join(str(part) for part in bpy.app.version),
        file=bpy.data.filepath,
        scene=scene.name,
        engine=scene.render.engine,
        device=device,
        device_label=device_label,
        frames=args.frames,
        resolution=render_resolution(scene),
    )
    progress = FrameProgress()
    with Handlers(progress):
        for frame in args.frames:
            render_frame(scene, frame, progress)
    emit("done", frames=args.frames)


def main():
    try:
        run(script_args())
    except RenderScriptError as exc:
        emit("error", message=str(exc))
        return exc.exit_code
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    status = main()
    if status:
        sys.exit(status)
