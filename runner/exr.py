"""Read what an encode needs from EXR frames: size, channels, and whether any pixel is see-through.

Blender writes single-layer RGBA EXRs (half float, premultiplied alpha) by default; channels
may also carry a layer prefix (``ViewLayer.Combined.A``) in multilayer files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenEXR

# An alpha at or above this encodes to the top 10-bit code (1023), so the pixel is opaque.
OPAQUE_ALPHA = 1.0 - 0.5 / 1023


class ExrError(Exception):
    """An EXR frame is missing, unreadable, or unlike the other frames."""


@dataclass(frozen=True)
class ExrInfo:
    """An EXR frame's display size and channel names."""

    path: Path
    width: int
    height: int
    channels: tuple[str, ...]

    @property
    def alpha_channel(self) -> str | None:
        return alpha_channel(self.channels)


def alpha_channel(channels: Iterable[str]) -> str | None:
    """``A``, or the alpha of a single layer such as ``ViewLayer.Combined.A``; else None."""
    names = list(channels)
    if "A" in names:
        return "A"
    layered = sorted(name for name in names if name.endswith(".A"))
    return layered[0] if layered else None


def _open(path: Path, *, header_only: bool) -> OpenEXR.File:
    try:
        return OpenEXR.File(str(path), separate_channels=True, header_only=header_only)
    except (OSError, RuntimeError) as exc:
        raise ExrError(f"cannot read EXR {path}: {exc}") from exc


def read_exr_info(path: Path) -> ExrInfo:
    """The display window size and channels of ``path`` (reads only its header)."""
    header = _open(path, header_only=True).header()
    (x_min, y_min), (x_max, y_max) = header["displayWindow"]
    channels = tuple(str(getattr(ch, "name", ch)) for ch in header["channels"])
    return ExrInfo(Path(path), int(x_max - x_min + 1), int(y_max - y_min + 1), channels)


def read_alpha(path: Path) -> np.ndarray | None:
    """The alpha channel of ``path`` as a 2-D float array, or None when it has none."""
    exr = _open(path, header_only=False)
    channels = exr.channels()
    name = alpha_channel(channels)
    return None if name is None else np.asarray(channels[name].pixels)


def has_transparency(paths: Iterable[Path], threshold: float = OPAQUE_ALPHA) -> bool:
    """True as soon as one frame has a pixel with alpha below ``threshold``.

    Frames without an alpha channel are opaque; NaN alpha counts as opaque.
    """
    for path in paths:
        alpha = read_alpha(Path(path))
        if alpha is not None and bool(np.any(alpha < threshold)):
            return True
    return False
