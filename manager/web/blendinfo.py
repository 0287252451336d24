"""What a .blend will render — frame range, fps, resolution, engine, output — without Blender.

blender-asset-tracer reads the scene blocks; 5.0 files are zstd-compressed (``zstandard``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from blender_asset_tracer import blendfile

# Blender's R_IMF_IMTYPE_* numbers for the formats a farm meets.
IMAGE_FORMATS = {
    0: "Targa",
    4: "Iris",
    14: "Targa raw",
    15: "AVI raw",
    16: "AVI JPEG",
    17: "PNG",
    20: "BMP",
    21: "Radiance HDR",
    22: "TIFF",
    23: "OpenEXR",
    24: "FFmpeg video",
    26: "Cineon",
    27: "DPX",
    28: "OpenEXR multilayer",
    29: "DDS",
    30: "JPEG 2000",
    31: "H.264",
    32: "Xvid",
    33: "Theora",
    34: "PSD",
    35: "WebP",
}
ENGINES = {
    "CYCLES": "Cycles",
    "BLENDER_EEVEE": "EEVEE",
    "BLENDER_EEVEE_NEXT": "EEVEE",
    "BLENDER_WORKBENCH": "Workbench",
}


@dataclass(frozen=True)
class BlendInfo:
    scene: str
    frame_start: int
    frame_end: int
    fps: float
    width: int
    height: int
    resolution_percent: int
    engine: str
    output_path: str
    output_format: str

    @property
    def frames(self) -> str:
        return f"{self.frame_start}-{self.frame_end}"

    @property
    def resolution(self) -> str:
        scale = self.resolution_percent / 100
        return f"{round(self.width * scale)} × {round(self.height * scale)}"


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_blend_info(path: Path) -> BlendInfo | None:
    """The first scene's render settings, or None when the file has no readable scene."""
    try:
        with blendfile.BlendFile(path) as blend:
            scenes = blend.find_blocks_from_code(b"SC")
            if not scenes:
                return None
            scene = scenes[0]

            def get(*names: bytes) -> object:
                return scene.get((b"r", *names))

            fps_base = float(get(b"frs_sec_base") or 1.0)  # type: ignore[arg-type]
            imtype = int(get(b"im_format", b"imtype"))  # type: ignore[call-overload]
            engine = _text(get(b"engine"))
            return BlendInfo(
                scene=_text(scene.id_name)[2:],
                frame_start=int(get(b"sfra")),  # type: ignore[call-overload]
                frame_end=int(get(b"efra")),  # type: ignore[call-overload]
                fps=round(float(get(b"frs_sec")) / (fps_base or 1.0), 3),  # type: ignore[arg-type]
                width=int(get(b"xsch")),  # type: ignore[call-overload]
                height=int(get(b"ysch")),  # type: ignore[call-overload]
                resolution_percent=int(get(b"size")),  # type: ignore[call-overload]
                engine=ENGINES.get(engine, engine.title()),
                output_path=_text(get(b"pic")),
                output_format=IMAGE_FORMATS.get(imtype, f"format {imtype}"),
            )
    except Exception:  # a damaged or unusual file: the job page shows no metadata
        return None


@functools.lru_cache(maxsize=256)
def blend_info_of_blob(path: Path) -> BlendInfo | None:
    """Cached by path: blobs are named by their content, so they never change."""
    return read_blend_info(path)
