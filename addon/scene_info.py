"""What the panel shows about the scene before submitting, and the files it cannot find.

Plain attribute reads on the objects Blender hands over (no bpy import), so the same code
runs in Blender and against simple stand-ins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

# Data-block collections whose items may point at a file on disk.
FILE_KINDS = {
    "images": "image",
    "libraries": "library",
    "movieclips": "movie clip",
    "sounds": "sound",
    "fonts": "font",
    "cache_files": "cache file",
    "volumes": "volume",
}


def frames_per_second(render: Any) -> str:
    """24, 25, 29.97, 23.976… — fps / fps_base, without float noise."""
    return f"{render.fps / render.fps_base:.6g}"


def scene_summary(scene: Any, blender_version: str) -> list[tuple[str, str]]:
    """(label, value) rows: frames, fps, resolution, engine, camera, layers, output, Blender."""
    render = scene.render
    scale = render.resolution_percentage / 100
    width, height = int(render.resolution_x * scale), int(render.resolution_y * scale)
    layers = [layer.name for layer in scene.view_layers if layer.use]
    return [
        ("Frames", f"{scene.frame_start}-{scene.frame_end}, step {scene.frame_step}"),
        ("Frame rate", f"{frames_per_second(render)} fps"),
        (
            "Resolution",
            f"{render.resolution_x}x{render.resolution_y} at "
            f"{render.resolution_percentage}% = {width}x{height}",
        ),
        ("Engine", str(render.engine)),
        ("Camera", scene.camera.name if scene.camera is not None else "none"),
        ("View layers", ", ".join(layers) or "none"),
        ("Output", str(render.image_settings.file_format)),
        ("Transparent film", "yes" if render.film_transparent else "no"),
        ("Blender", blender_version),
    ]


def scene_problems(scene: Any) -> list[str]:
    """Things that make the render fail or come out empty, said before submitting."""
    problems = []
    if scene.camera is None:
        problems.append("the scene has no camera: set one, or every frame fails")
    if not any(layer.use for layer in scene.view_layers):
        problems.append("no view layer is enabled for rendering")
    if scene.frame_end < scene.frame_start:
        problems.append("the frame range is empty (end before start)")
    return problems


def external_files(data: Any, abspath: Callable[..., str]) -> list[tuple[str, str, str]]:
    """(kind, name, absolute path) of every data-block read from a file and not packed."""
    found = []
    for kind in FILE_KINDS:
        for block in getattr(data, kind, ()):
            filepath = getattr(block, "filepath", "")
            if not filepath or filepath == "<builtin>" or getattr(block, "packed_file", None):
                continue
            source = getattr(block, "source", "FILE")
            if kind == "images" and source not in ("FILE", "SEQUENCE", "MOVIE"):
                continue
            found.append((kind, block.name, abspath(filepath, library=block.library)))
    return found


def missing_files(
    files: Iterable[tuple[str, str, str]], exists: Callable[[str], bool] = os.path.exists
) -> list[str]:
    """Warnings for the files that are not on disk; the job would render without them."""
    return [
        f"{FILE_KINDS.get(kind, kind)} {name!r}: {path} not found"
        for kind, name, path in files
        if not exists(path)
    ]
