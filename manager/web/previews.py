"""A rendered EXR frame as a PNG or JPEG a browser can show, cached beside the job.

Blender writes linear, premultiplied RGBA. The preview composites it over a grey
checkerboard (so transparency shows), applies the sRGB transfer curve with values above 1
clipped (Blender's "Standard" view), and is kept in ``jobs/<id>/previews/`` under the
output's hash, so a frame is tone-mapped once however often the page asks.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import OpenEXR
from numpy.typing import NDArray
from PIL import Image

FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg")}
CHECKER_SIZE = 8
CHECKER_LIGHT, CHECKER_DARK = 0.8, 0.55  # display values of the two squares


def srgb_encode(linear: NDArray[np.float32]) -> NDArray[np.float32]:
    """Linear light to sRGB display values, clipped to 0..1."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_decode(display: float) -> float:
    if display <= 0.04045:
        return display / 12.92
    return float(((display + 0.055) / 1.055) ** 2.4)


def checkerboard(height: int, width: int, size: int = CHECKER_SIZE) -> NDArray[np.float32]:
    """Linear values of a light/dark checkerboard, so it looks right after encoding."""
    ys, xs = np.indices((height, width))
    light = ((ys // size + xs // size) % 2) == 0
    return np.where(light, srgb_decode(CHECKER_LIGHT), srgb_decode(CHECKER_DARK)).astype(np.float32)


def read_exr_rgba(path: Path) -> NDArray[np.float32]:
    """An (height, width, 4) float array; a missing alpha channel reads as opaque."""
    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    names = {name.split(".")[-1]: name for name in channels}
    first = channels[next(iter(channels))].pixels
    opaque = np.ones(first.shape, dtype=np.float32)

    def plane(letter: str, fallback: NDArray[np.float32]) -> NDArray[np.float32]:
        name = names.get(letter)
        return fallback if name is None else channels[name].pixels.astype(np.float32)

    red = plane("R", plane("Y", first.astype(np.float32)))
    return np.dstack([red, plane("G", red), plane("B", red), plane("A", opaque)])


def tone_map(rgba: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Premultiplied linear RGBA over a checkerboard, as 8-bit sRGB."""
    height, width = rgba.shape[:2]
    rgba = np.nan_to_num(rgba, nan=0.0, posinf=1.0, neginf=0.0)
    alpha = np.clip(rgba[..., 3:4], 0.0, 1.0)
    background = checkerboard(height, width)[..., None]
    linear = rgba[..., :3] + (1.0 - alpha) * background
    return np.round(srgb_encode(linear) * 255).astype(np.uint8)


def encode_image(pixels: NDArray[np.uint8], fmt: str, max_width: int | None = None) -> bytes:
    image = Image.fromarray(pixels, "RGB")
    if max_width and image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    pil_format = FORMATS[fmt][0]
    image.save(out, pil_format, **({"quality": 88} if pil_format == "JPEG" else {}))
    return out.getvalue()


def preview_path(cache_dir: Path, sha256: str, fmt: str, max_width: int | None) -> Path:
    return cache_dir / f"{sha256[:32]}-{max_width or 'full'}.{fmt}"


def cached_preview(
    exr: Path, sha256: str, cache_dir: Path, *, fmt: str = "png", max_width: int | None = None
) -> Path:
    """The preview file for ``exr`` (by its hash), made now if it is not cached yet."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown preview format {fmt!r}")
    target = preview_path(cache_dir, sha256, fmt, max_width)
    if target.is_file():
        return target
    data = encode_image(tone_map(read_exr_rgba(exr)), fmt, max_width)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=cache_dir, prefix=".preview-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(temp, target)  # two requests at once both write; the last rename wins
    return target
