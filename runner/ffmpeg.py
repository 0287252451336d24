"""Video deliverables from EXR frames: specs, FFmpeg argv builders and output parsers.

Pure functions only (no process is started here; ``runner.encode`` runs them). Every video
deliverable is HDR: HLG transfer, BT.2020 primaries and matrix, limited range, 10-bit,
encoded in two passes. Scene-linear 1.0 becomes reference white (75 % HLG, 203 nits).

Filter graph for one encode (see ``build_filter_graph``)::

    EXR (gbrapf32le, premultiplied)
      ├─ [unpremultiply when a matte is written] → zscale linear→HLG R'G'B' (16-bit, clamps
      │   to the legal 0–1 signal) → pad to even → zscale → Y'CbCr 4:2:0 10-bit limited → [v]
      └─ (matte only) 16-bit RGBA → pad to even (transparent) → alpha plane → 10-bit
          full-range grey → [a]

The colour is straight (unpremultiplied) only when the alpha matte travels with it; without
a matte it stays premultiplied, i.e. composited over black, which is what a viewer expects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Literal


class Deliverable(StrEnum):
    """What a job delivers: its EXR frames, plus at most one HDR video made from them."""

    EXR = "EXR"
    EXR_264_MP4 = "EXR_264_MP4"
    EXR_AV1_MP4 = "EXR_AV1_MP4"
    EXR_VP9_WEBM = "EXR_VP9_WEBM"


@dataclass(frozen=True)
class VideoSpec:
    """How one video deliverable is encoded."""

    deliverable: Deliverable
    label: str
    encoder: str
    muxer: str
    extension: str
    pix_fmt: str
    # None: the codec carries no alpha matte. Otherwise the matte's filter tail, format and
    # encoder options (lossless: a lossy matte misses hard edges by far more than 2 %).
    matte_filters: str | None
    matte_pix_fmt: str | None
    matte_codec_args: tuple[str, ...]
    # Default colour bitrate = width × height × fps × this, in bits per second.
    bits_per_pixel: float
    codec_args: tuple[str, ...]


VIDEO_SPECS: dict[Deliverable, VideoSpec] = {
    Deliverable.EXR_264_MP4: VideoSpec(
        deliverable=Deliverable.EXR_264_MP4,
        label="H.264 High 10, HLG 10-bit, MP4",
        encoder="libx264",
        muxer="mp4",
        extension=".mp4",
        pix_fmt="yuv420p10le",
        matte_filters=None,
        matte_pix_fmt=None,
        matte_codec_args=(),
        bits_per_pixel=0.25,
        codec_args=("-profile:v", "high10", "-preset", "slow"),
    ),
    Deliverable.EXR_AV1_MP4: VideoSpec(
        deliverable=Deliverable.EXR_AV1_MP4,
        label="AV1 (libaom) 10-bit, HLG, MP4; alpha as a lossless 10-bit monochrome AV1 stream",
        encoder="libaom-av1",
        muxer="mp4",
        extension=".mp4",
        pix_fmt="yuv420p10le",
        matte_filters="scale=in_range=pc:out_range=pc,format=gray10le",
        matte_pix_fmt="gray10le",
        matte_codec_args=("-aom-params:v:1", "lossless=1"),
        bits_per_pixel=0.12,
        codec_args=("-usage", "good", "-cpu-used", "4", "-row-mt", "1"),
    ),
    Deliverable.EXR_VP9_WEBM: VideoSpec(
        deliverable=Deliverable.EXR_VP9_WEBM,
        label="VP9 profile 2, HLG 10-bit, WebM; alpha as a lossless 10-bit VP9 stream",
        encoder="libvpx-vp9",
        muxer="webm",
        extension=".webm",
        pix_fmt="yuv420p10le",
        # libvpx-vp9 has no grey format: the matte is luma with neutral chroma.
        matte_filters="scale=in_range=pc:out_range=pc,format=yuv420p10le",
        matte_pix_fmt="yuv420p10le",
        matte_codec_args=("-lossless:v:1", "1"),
        bits_per_pixel=0.16,
        codec_args=("-profile:v", "2", "-deadline", "good", "-cpu-used", "2", "-row-mt", "1"),
    ),
}

# Filters every deliverable needs besides its encoder (and the exr decoder).
REQUIRED_FILTERS = ("zscale", "unpremultiply", "pad", "split", "extractplanes", "format", "scale")
REQUIRED_DECODERS = ("exr",)

COLOUR_TITLE = "HLG colour"
MATTE_TITLE = "Alpha matte"
PREVIEW_TITLE = "framefarm preview (8-bit SDR, not a deliverable)"
# A floor keeps small videos from being starved: below it VP9 visibly misses grey levels.
MIN_BITRATE_KBPS = 500
KEYFRAME_SECONDS = 2
PREVIEW_MAX_SIDE = 640
PREVIEW_CRF = 26
FRAME_PATTERN = "%06d.exr"

# Scene-linear Rec.709 → HLG R'G'B' in BT.2020 (npl=203: linear 1.0 is reference white at
# 75 % HLG). Writing 16-bit integers clamps each component to the 0–1 signal, so highlights
# above ~4.9× reference white and negative values cannot reach reserved code values later.
HLG_RGB = (
    "zscale=tin=linear:pin=bt709:min=gbr:rin=full:npl=203"
    ":t=arib-std-b67:p=bt2020:m=gbr:r=full,format=gbrp16le"
)
PAD_EVEN = "pad=w=ceil(iw/2)*2:h=ceil(ih/2)*2:x=0:y=0:color=black"
PAD_EVEN_TRANSPARENT = "pad=w=ceil(iw/2)*2:h=ceil(ih/2)*2:x=0:y=0:color=black@0"
HLG_YUV = (
    "zscale=tin=arib-std-b67:pin=bt2020:min=gbr:rin=full"
    ":t=arib-std-b67:p=bt2020:m=bt2020nc:r=tv,format=yuv420p10le"
)
# swscale would clamp the float alpha through 16 bits anyway; zscale must not see it, as it
# squeezes alpha into 16–235. The 16-bit RGBA frame is padded while it is still RGB, because
# pad fills grey formats with limited-range black (16/255), not with 0.
MATTE_16 = f"format=gbrap16le,{PAD_EVEN_TRANSPARENT},extractplanes=a"
SDR_RGB = (
    "zscale=tin=linear:pin=bt709:min=gbr:rin=full:t=bt709:p=bt709:m=gbr:r=full,format=gbrp16le"
)
HLG_TAGS = ("bt2020", "arib-std-b67", "bt2020nc", "tv")
SDR_TAGS = ("bt709", "bt709", "bt709", "tv")


def video_spec(deliverable: Deliverable | str) -> VideoSpec:
    """The spec of a video deliverable; ValueError for ``EXR`` or an unknown name."""
    try:
        return VIDEO_SPECS[Deliverable(deliverable)]
    except (KeyError, ValueError):
        known = ", ".join(VIDEO_SPECS)
        raise ValueError(f"{deliverable!r} is not a video deliverable ({known})") from None


_NTSC_BASES = (24, 30, 48, 60, 120, 240)


def parse_fps(value: Fraction | int | float | str) -> Fraction:
    """An exact frame rate: ``30000/1001``, ``29.97`` (→ 30000/1001), ``25``, ``12.5``."""
    try:
        if isinstance(value, str):
            text = value.strip()
            fps = Fraction(text) if "/" in text else _snap_fps(float(text))
        elif isinstance(value, float):
            fps = _snap_fps(value)
        else:
            fps = Fraction(value)
    except ZeroDivisionError:
        raise ValueError(f"frame rate {value!r} divides by zero") from None
    if fps <= 0 or fps > 1000:
        raise ValueError(f"frame rate {value!r} is outside 0–1000 fps")
    return fps


def _snap_fps(value: float) -> Fraction:
    if not math.isfinite(value):
        raise ValueError(f"frame rate {value!r} is not a number")
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        if abs(value - float(ntsc)) < 0.005:
            return ntsc
    return Fraction(value).limit_denominator(1001)


def fps_from_blender(fps: int, fps_base: float) -> Fraction:
    """Blender's ``render.fps / render.fps_base`` as an exact rate (30 / 1.001 → 30000/1001)."""
    return parse_fps(Fraction(fps) / Fraction(fps_base).limit_denominator(10000))


def even(size: int) -> int:
    return size + size % 2


def default_bitrate_kbps(
    deliverable: Deliverable | str, width: int, height: int, fps: Fraction
) -> int:
    """The colour bitrate for a resolution and rate, e.g. 1080p30 H.264 ≈ 15.5 Mbit/s."""
    spec = video_spec(deliverable)
    bits = even(width) * even(height) * float(fps) * spec.bits_per_pixel
    return max(MIN_BITRATE_KBPS, int(round(bits / 1000 / 10)) * 10)


def keyframe_interval(fps: Fraction) -> int:
    return max(1, round(fps * KEYFRAME_SECONDS))


def build_filter_graph(spec: VideoSpec, *, matte: bool) -> str:
    """The -filter_complex graph: input 0 → ``[v]`` colour, plus ``[a]`` matte if ``matte``."""
    if not matte:
        return f"[0:v]{HLG_RGB},{PAD_EVEN},{HLG_YUV}[v]"
    if spec.matte_filters is None:
        raise ValueError(f"{spec.deliverable} cannot carry an alpha matte")
    colour = f"unpremultiply=inplace=1,{HLG_RGB},{PAD_EVEN},{HLG_YUV}"
    return f"[0:v]split=2[c][m];[c]{colour}[v];[m]{MATTE_16},{spec.matte_filters}[a]"


@dataclass(frozen=True)
class EncodeSettings:
    """Everything an encode's argv depends on; frames are ``frames_dir/000000.exr`` onward."""

    deliverable: Deliverable
    frames_dir: Path
    fps: Fraction
    bitrate_kbps: int
    matte: bool
    passlog: Path
    output: Path

    @property
    def spec(self) -> VideoSpec:
        return video_spec(self.deliverable)


def _ffmpeg_path(path: Path) -> str:
    # "file:" keeps a colon in a folder name from being read as a protocol.
    return "file:" + str(Path(path).absolute())


def input_args(frames_dir: Path, fps: Fraction) -> list[str]:
    pattern = _ffmpeg_path(frames_dir).replace("%", "%%") + "/" + FRAME_PATTERN
    rate = f"{fps.numerator}/{fps.denominator}"
    return ["-f", "image2", "-framerate", rate, "-start_number", "0", "-i", pattern]


def _common_args(ffmpeg: str) -> list[str]:
    # -xerror: FFmpeg otherwise skips a frame it cannot decode and still exits 0.
    return [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "warning", "-xerror"]


def _progress_args() -> list[str]:
    return ["-nostats", "-progress", "pipe:1"]


def _colour_tag_args(stream: str, tags: tuple[str, str, str, str]) -> list[str]:
    primaries, transfer, matrix, colour_range = tags
    return [
        f"-color_primaries:{stream}", primaries,
        f"-color_trc:{stream}", transfer,
        f"-colorspace:{stream}", matrix,
        f"-color_range:{stream}", colour_range,
    ]  # fmt: skip


def build_ffmpeg_argv(
    settings: EncodeSettings, *, pass_number: Literal[1, 2], ffmpeg: str = "ffmpeg"
) -> list[str]:
    """One pass of a two-pass deliverable encode; pass 1 writes only the pass log."""
    spec = settings.spec
    argv = _common_args(ffmpeg) + _progress_args()
    argv += input_args(settings.frames_dir, settings.fps)
    argv += ["-filter_complex", build_filter_graph(spec, matte=settings.matte)]
    argv += ["-map", "[v]"] + (["-map", "[a]"] if settings.matte else [])
    argv += ["-c:v", spec.encoder, *spec.codec_args]
    argv += ["-g", str(keyframe_interval(settings.fps))]
    argv += ["-pix_fmt:v:0", spec.pix_fmt, "-b:v:0", f"{settings.bitrate_kbps}k"]
    argv += _colour_tag_args("v:0", HLG_TAGS)
    argv += ["-metadata:s:v:0", f"title={COLOUR_TITLE}"]
    argv += ["-metadata:s:v:0", f"handler_name={COLOUR_TITLE}", "-disposition:v:0", "default"]
    if settings.matte:
        assert spec.matte_pix_fmt is not None
        argv += ["-pix_fmt:v:1", spec.matte_pix_fmt, *spec.matte_codec_args]
        argv += ["-color_range:v:1", "pc"]
        argv += ["-metadata:s:v:1", f"title={MATTE_TITLE}"]
        argv += ["-metadata:s:v:1", f"handler_name={MATTE_TITLE}", "-disposition:v:1", "0"]
        argv += ["-metadata", f"comment=stream 1 is the {MATTE_TITLE.lower()} of stream 0"]
    argv += ["-pass", str(pass_number), "-passlogfile", str(settings.passlog)]
    if pass_number == 1:
        return argv + ["-f", "null", "-"]
    if spec.muxer == "mp4":
        argv += ["-movflags", "+faststart"]
    return argv + ["-f", spec.muxer, _ffmpeg_path(settings.output)]


def preview_size(width: int, height: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """Even dimensions no larger than ``max_side``, keeping the aspect ratio."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, even(int(width * scale))), max(2, even(int(height * scale)))


def build_preview_argv(
    *,
    frames_dir: Path,
    fps: Fraction,
    width: int,
    height: int,
    output: Path,
    ffmpeg: str = "ffmpeg",
    max_side: int = PREVIEW_MAX_SIDE,
) -> list[str]:
    """A small 8-bit SDR BT.709 H.264 preview for the web page; never a deliverable.

    The premultiplied colour is kept, so transparent areas show over black.
    """
    preview_w, preview_h = preview_size(width, height, max_side)
    to_yuv = (
        f"zscale=w={preview_w}:h={preview_h}:tin=bt709:pin=bt709:min=gbr:rin=full"
        ":t=bt709:p=bt709:m=bt709:r=tv,format=yuv420p"
    )
    argv = _common_args(ffmpeg) + _progress_args() + input_args(frames_dir, fps)
    argv += ["-filter_complex", f"[0:v]{SDR_RGB},{to_yuv}[v]", "-map", "[v]"]
    argv += ["-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast"]
    argv += ["-crf", str(PREVIEW_CRF), "-g", str(keyframe_interval(fps)), "-pix_fmt", "yuv420p"]
    argv += _colour_tag_args("v:0", SDR_TAGS)
    argv += ["-metadata", f"title={PREVIEW_TITLE}", "-metadata:s:v:0", "handler_name=Preview"]
    return argv + ["-movflags", "+faststart", "-f", "mp4", _ffmpeg_path(output)]


# --- parsers -------------------------------------------------------------------------------

_VERSION = re.compile(r"^ffmpeg version (\S+)", re.MULTILINE)
# " V....D libx264              libx264 H.264 / AVC …" (the same layout for -decoders)
_CODEC_LINE = re.compile(r"^ ([VAS][F.][S.][X.][B.][D.]) (\S+)\s")
# " .SC zscale            V->V       Apply resizing, …"
_FILTER_LINE = re.compile(r"^ ([T.][S.][C.]) (\S+)\s+\S*->\S*\s")
_PROGRESS_LINE = re.compile(r"^(\w+)=(.*)$")


def parse_ffmpeg_version(output: str) -> str | None:
    """``5.1.9-0+deb12u1`` from ``ffmpeg -version``."""
    match = _VERSION.search(output)
    return match.group(1) if match else None


def _parse_codec_list(output: str, kind: str) -> frozenset[str]:
    names: set[str] = set()
    listing = False
    for line in output.splitlines():
        if line.strip() == "------":
            listing = True
            continue
        match = _CODEC_LINE.match(line) if listing else None
        if match and match.group(1)[0] == kind:
            names.add(match.group(2))
    return frozenset(names)


def parse_encoders(output: str, kind: str = "V") -> frozenset[str]:
    """Names of the video (or ``kind`` A/S) encoders listed by ``ffmpeg -encoders``."""
    return _parse_codec_list(output, kind)


def parse_decoders(output: str, kind: str = "V") -> frozenset[str]:
    """Names of the decoders listed by ``ffmpeg -decoders``."""
    return _parse_codec_list(output, kind)


def parse_filters(output: str) -> frozenset[str]:
    """Names of the filters listed by ``ffmpeg -filters``."""
    return frozenset(m.group(2) for m in map(_FILTER_LINE.match, output.splitlines()) if m)


@dataclass(frozen=True)
class FFmpegInfo:
    """What one FFmpeg executable can do."""

    path: str
    version: str
    encoders: frozenset[str]
    decoders: frozenset[str]
    filters: frozenset[str]


def missing_for(deliverable: Deliverable | str, info: FFmpegInfo) -> list[str]:
    """What this FFmpeg lacks for ``deliverable``, e.g. ``["encoder libaom-av1"]``."""
    spec = video_spec(deliverable)
    missing = [] if spec.encoder in info.encoders else [f"encoder {spec.encoder}"]
    missing += [f"decoder {name}" for name in REQUIRED_DECODERS if name not in info.decoders]
    return missing + [f"filter {name}" for name in REQUIRED_FILTERS if name not in info.filters]


def supported_deliverables(info: FFmpegInfo) -> list[Deliverable]:
    """The video deliverables this FFmpeg can encode."""
    return [d for d in VIDEO_SPECS if not missing_for(d, info)]


@dataclass(frozen=True)
class FFmpegProgress:
    """One block of ``-progress`` output."""

    frame: int
    out_time_us: int | None
    done: bool


class ProgressReader:
    """Collects ``key=value`` lines of ``-progress pipe:1`` into blocks."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> FFmpegProgress | None:
        """The finished block when ``line`` ends one (``progress=…``), else None."""
        match = _PROGRESS_LINE.match(line.strip())
        if match is None:
            return None
        key, value = match.groups()
        if key != "progress":
            self._block[key] = value.strip()
            return None
        block, self._block = self._block, {}
        return FFmpegProgress(
            frame=_int_or(block.get("frame"), 0) or 0,
            out_time_us=_int_or(block.get("out_time_us"), None),
            done=value.strip() == "end",
        )


def _int_or(text: str | None, default: int | None) -> int | None:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
