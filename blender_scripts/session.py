"""Keep one .blend loaded and render frames on request, for as long as stdin stays open.

Runs inside Blender (bpy + stdlib only), on Blender 3.4 up to bpy 5.0:

    blender -b --factory-startup --disable-autoexec scene.blend --python-exit-code 1 \\
        -P session.py -- [--scene S] [--device CPU] [--gpu-ids …] [--threads N]
    python session.py --blend scene.blend [--allow-scripts] [--scene S] …   # bpy module

Once the file is loaded it prints ``@framefarm {"event": "session_ready", …}``, then reads
one JSON request per line on stdin, ``{"output_dir": "/out", "frames": [1, 2]}``, and
answers each with the events render.py prints for a whole render (ready, per frame
frame_started, samples, saved, frame_finished, then done), or with one error event. The
request is rendered by render.py's own functions, so a frame from a session is the same
file, pixel for pixel, as one from a fresh ``render.py`` process. End of input ends the
session with exit status 0; a file that cannot be loaded exits 2 (bad arguments) or 1.
"""

import argparse
import importlib.util
import json
import os
import sys


def load_render_module():
    """render.py from this folder: ``blender -P`` does not put it on sys.path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "render.py")
    spec = importlib.util.spec_from_file_location("framefarm_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render_module()


def parse_args(argv):
    parser = render.ArgumentParser(prog="session.py", description=__doc__.splitlines()[0])
    parser.add_argument("--blend", help="open this .blend first (bpy module backend)")
    render.add_allow_scripts(parser)
    parser.add_argument("--scene", help="scene to render (default: the file's active scene)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--gpu-ids", default="")
    parser.add_argument("--threads", type=int, help="render threads; 0 = automatic")
    return parser.parse_args(argv)


def parse_request(line, session_args):
    """A render request as the namespace render.configure reads, or RenderScriptError."""
    try:
        request = json.loads(line)
    except ValueError:
        raise render.RenderScriptError(f"not a JSON request: {line[:200]!r}", 2) from None
    if not isinstance(request, dict):
        raise render.RenderScriptError("a request must be a JSON object", 2)
    output_dir, frames = request.get("output_dir"), request.get("frames")
    if not isinstance(output_dir, str) or not output_dir:
        raise render.RenderScriptError("a request needs output_dir, a folder path", 2)
    if not isinstance(frames, list) or not frames:
        raise render.RenderScriptError("a request needs frames, a non-empty list", 2)
    if not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise render.RenderScriptError("frames must be whole numbers", 2)
    args = argparse.Namespace(**vars(session_args))
    args.output_dir, args.frames = output_dir, frames
    return args


class Session:
    """The loaded scene, and the output folder render.configure last pointed it at."""

    def __init__(self, args):
        self.args = args
        if args.blend:
            render.open_blend(args.blend, args.allow_scripts)
        self.scene = render.pick_scene(args.scene)
        self.configured_for = None
        self.device = self.device_label = None

    def render_request(self, args):
        # The same settings render.py makes, for the folder of this request; configured
        # again only when the folder changes (a new task), not for every frame.
        if self.configured_for != args.output_dir:
            self.device, self.device_label = render.configure(self.scene, args)
            self.configured_for = args.output_dir
        os.makedirs(os.path.abspath(args.output_dir), exist_ok=True)
        render.emit(
            "ready",
            blender_version=".".join(str(part) for part in render.bpy.app.version),
            file=render.bpy.data.filepath,
            scene=self.scene.name,
            engine=self.scene.render.engine,
            device=self.device,
            device_label=self.device_label,
            frames=args.frames,
            resolution=render.render_resolution(self.scene),
        )
        progress = render.FrameProgress()
        with render.Handlers(progress):
            for frame in args.frames:
                render.render_frame(self.scene, frame, progress)
        render.emit("done", frames=args.frames)


def serve(session, lines):
    for line in lines:
        if not line.strip():
            continue
        try:
            session.render_request(parse_request(line, session.args))
        except render.RenderScriptError as exc:
            render.emit("error", message=str(exc))
        except Exception as exc:
            render.emit("error", message=f"{type(exc).__name__}: {exc}")


def main():
    try:
        session = Session(parse_args(render.script_args()))
    except render.RenderScriptError as exc:
        render.emit("error", message=str(exc))
        return exc.exit_code
    except Exception as exc:
        render.emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    render.emit(
        "session_ready",
        pid=os.getpid(),
        blender_version=".".join(str(part) for part in render.bpy.app.version),
        file=render.bpy.data.filepath,
        scene=session.scene.name,
    )
    serve(session, sys.stdin)
    return 0


if __name__ == "__main__":
    status = main()
    if status:
        sys.exit(status)
