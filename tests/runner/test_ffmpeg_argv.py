"""The FFmpeg argv builders, filter graphs and parsers, without running an encode."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from runner.encode import FFmpegNotFound, probe_ffmpeg
from runner.ffmpeg import (
    Deliverable,
    EncodeSettings,
    FFmpegInfo,
    ProgressReader,
    build_ffmpeg_argv,
    build_filter_graph,
    build_preview_argv,
    default_bitrate_kbps,
    fps_from_blender,
    keyframe_interval,
    missing_for,
    parse_encoders,
    parse_ffmpeg_version,
    parse_filters,
    parse_fps,
    preview_size,
    supported_deliverables,
    video_spec,
)

NTSC = Fraction(30000, 1001)
HLG_CHAIN = (
    "zscale=tin=linear:pin=bt709:min=gbr:rin=full:npl=203:t=arib-std-b67:p=bt2020:m=gbr:r=full,"
    "format=gbrp16le,pad=w=ceil(iw/2)*2:h=ceil(ih/2)*2:x=0:y=0:color=black,"
    "zscale=tin=arib-std-b67:pin=bt2020:min=gbr:rin=full:t=arib-std-b67:p=bt2020:m=bt2020nc:r=tv,"
    "format=yuv420p10le"
)
MATTE_CHAIN = (
    "format=gbrap16le,pad=w=ceil(iw/2)*2:h=ceil(ih/2)*2:x=0:y=0:color=black@0,extractplanes=a,"
    "scale=in_range=pc:out_range=pc,"
)
HEAD = [
    "ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "warning", "-xerror",
    "-nostats", "-progress", "pipe:1",
    "-f", "image2", "-framerate", "30000/1001", "-start_number", "0",
    "-i", "file:/w/encode-1/frames/%06d.exr",
]  # fmt: skip
HLG_TAG_ARGS = [
    "-color_primaries:v:0", "bt2020", "-color_trc:v:0", "arib-std-b67",
    "-colorspace:v:0", "bt2020nc", "-color_range:v:0", "tv",
    "-metadata:s:v:0", "title=HLG colour", "-metadata:s:v:0", "handler_name=HLG colour",
    "-disposition:v:0", "default",
]  # fmt: skip


def settings(deliverable: Deliverable, *, matte: bool, kbps: int = 15560) -> EncodeSettings:
    return EncodeSettings(
        deliverable=deliverable,
        frames_dir=Path("/w/encode-1/frames"),
        fps=NTSC,
        bitrate_kbps=kbps,
        matte=matte,
        passlog=Path("/w/encode-1/passlog"),
        output=Path("/out/shot.mp4"),
    )


def test_h264_pass_1_writes_only_the_pass_log() -> None:
    argv = build_ffmpeg_argv(settings(Deliverable.EXR_264_MP4, matte=False), pass_number=1)
    assert argv == HEAD + [
        "-filter_complex", f"[0:v]{HLG_CHAIN}[v]",
        "-map", "[v]",
        "-c:v", "libx264", "-profile:v", "high10", "-preset", "slow",
        "-g", "60",
        "-pix_fmt:v:0", "yuv420p10le", "-b:v:0", "15560k",
        *HLG_TAG_ARGS,
        "-pass", "1", "-passlogfile", "/w/encode-1/passlog",
        "-f", "null", "-",
    ]  # fmt: skip


def test_h264_pass_2_writes_the_mp4() -> None:
    argv = build_ffmpeg_argv(settings(Deliverable.EXR_264_MP4, matte=False), pass_number=2)
    assert argv[-9:] == [
        "-pass", "2", "-passlogfile", "/w/encode-1/passlog",
        "-movflags", "+faststart", "-f", "mp4", "file:/out/shot.mp4",
    ]  # fmt: skip
    assert (
        argv[:-9]
        == build_ffmpeg_argv(settings(Deliverable.EXR_264_MP4, matte=False), pass_number=1)[:-7]
    )


def test_av1_with_matte_pass_2() -> None:
    argv = build_ffmpeg_argv(
        settings(Deliverable.EXR_AV1_MP4, matte=True, kbps=7460), pass_number=2, ffmpeg="/opt/ff"
    )
    assert argv == ["/opt/ff", *HEAD[1:]] + [
        "-filter_complex",
        f"[0:v]split=2[c][m];[c]unpremultiply=inplace=1,{HLG_CHAIN}[v];"
        f"[m]{MATTE_CHAIN}format=gray10le[a]",
        "-map", "[v]", "-map", "[a]",
        "-c:v", "libaom-av1", "-usage", "good", "-cpu-used", "4", "-row-mt", "1",
        "-g", "60",
        "-pix_fmt:v:0", "yuv420p10le", "-b:v:0", "7460k",
        *HLG_TAG_ARGS,
        "-pix_fmt:v:1", "gray10le", "-aom-params:v:1", "lossless=1",
        "-color_range:v:1", "pc",
        "-metadata:s:v:1", "title=Alpha matte", "-metadata:s:v:1", "handler_name=Alpha matte",
        "-disposition:v:1", "0",
        "-metadata", "comment=stream 1 is the alpha matte of stream 0",
        "-pass", "2", "-passlogfile", "/w/encode-1/passlog",
        "-movflags", "+faststart", "-f", "mp4", "file:/out/shot.mp4",
    ]  # fmt: skip


def test_vp9_matte_is_10_bit_yuv_with_profile_2() -> None:
    argv = build_ffmpeg_argv(settings(Deliverable.EXR_VP9_WEBM, matte=True), pass_number=2)
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.endswith(f"[m]{MATTE_CHAIN}format=yuv420p10le[a]")
    codec = argv[argv.index("-c:v") : argv.index("-g")]
    assert codec == [
        "-c:v", "libvpx-vp9", "-profile:v", "2",
        "-deadline", "good", "-cpu-used", "2", "-row-mt", "1",
    ]  # fmt: skip
    assert argv[-3:] == ["-f", "webm", "file:/out/shot.mp4"]
    assert "-movflags" not in argv
    matte = argv[argv.index("-pix_fmt:v:1") : argv.index("-color_range:v:1")]
    assert matte == ["-pix_fmt:v:1", "yuv420p10le", "-lossless:v:1", "1"]


def test_h264_never_gets_a_matte() -> None:
    with pytest.raises(ValueError, match="cannot carry an alpha matte"):
        build_filter_graph(video_spec(Deliverable.EXR_264_MP4), matte=True)


def test_paths_with_percent_and_colon_reach_ffmpeg_intact() -> None:
    odd = EncodeSettings(
        deliverable=Deliverable.EXR_264_MP4,
        frames_dir=Path("/w/100%:x/frames"),
        fps=Fraction(24),
        bitrate_kbps=100,
        matte=False,
        passlog=Path("/w/100%:x/passlog"),
        output=Path("/out/a:b.mp4"),
    )
    argv = build_ffmpeg_argv(odd, pass_number=2)
    assert argv[argv.index("-i") + 1] == "file:/w/100%%:x/frames/%06d.exr"
    assert argv[argv.index("-framerate") + 1] == "24/1"
    assert argv[-1] == "file:/out/a:b.mp4"


def test_preview_argv_is_small_sdr_and_labelled() -> None:
    argv = build_preview_argv(
        frames_dir=Path("/w/f"), fps=Fraction(24), width=1920, height=1080, output=Path("/o/p.mp4")
    )
    assert argv == [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "warning", "-xerror",
        "-nostats", "-progress", "pipe:1",
        "-f", "image2", "-framerate", "24/1", "-start_number", "0", "-i", "file:/w/f/%06d.exr",
        "-filter_complex",
        "[0:v]zscale=tin=linear:pin=bt709:min=gbr:rin=full:t=bt709:p=bt709:m=gbr:r=full,"
        "format=gbrp16le,zscale=w=640:h=360:tin=bt709:pin=bt709:min=gbr:rin=full:t=bt709"
        ":p=bt709:m=bt709:r=tv,format=yuv420p[v]",
        "-map", "[v]",
        "-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast", "-crf", "26",
        "-g", "48", "-pix_fmt", "yuv420p",
        "-color_primaries:v:0", "bt709", "-color_trc:v:0", "bt709",
        "-colorspace:v:0", "bt709", "-color_range:v:0", "tv",
        "-metadata", "title=framefarm preview (8-bit SDR, not a deliverable)",
        "-metadata:s:v:0", "handler_name=Preview",
        "-movflags", "+faststart", "-f", "mp4", "file:/o/p.mp4",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), (640, 360)),
        ((63, 47), (64, 48)),
        ((1080, 1920), (360, 640)),
        ((1, 1), (2, 2)),
    ],
)
def test_preview_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert preview_size(*size) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30000/1001", NTSC),
        ("29.97", NTSC),
        (29.97, NTSC),
        (29.97002997, NTSC),
        ("23.976", Fraction(24000, 1001)),
        (59.94, Fraction(60000, 1001)),
        (24, Fraction(24)),
        ("25", Fraction(25)),
        (12.5, Fraction(25, 2)),
        (Fraction(2997, 100), Fraction(2997, 100)),
    ],
)
def test_parse_fps_keeps_rates_exact(value: str | float, expected: Fraction) -> None:
    assert parse_fps(value) == expected


@pytest.mark.parametrize("value", ["0", -24, "nan", float("inf"), "fast", "30/0", 1001])
def test_parse_fps_rejects_nonsense(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_fps(value)


def test_fps_from_blender_settings() -> None:
    assert fps_from_blender(30, 1.001) == NTSC
    assert fps_from_blender(24, 1.0) == 24
    assert fps_from_blender(60, 1.001) == Fraction(60000, 1001)


def test_default_bitrates_follow_size_rate_and_codec() -> None:
    assert default_bitrate_kbps(Deliverable.EXR_264_MP4, 1920, 1080, Fraction(30)) == 15550
    assert default_bitrate_kbps(Deliverable.EXR_AV1_MP4, 1920, 1080, Fraction(30)) == 7460
    assert default_bitrate_kbps(Deliverable.EXR_VP9_WEBM, 1920, 1080, Fraction(30)) == 9950
    assert default_bitrate_kbps("EXR_264_MP4", 3840, 2160, Fraction(30)) == 62210
    assert default_bitrate_kbps(Deliverable.EXR_264_MP4, 63, 47, NTSC) == 500
    assert keyframe_interval(NTSC) == 60
    assert keyframe_interval(Fraction(1, 10)) == 1


@pytest.mark.parametrize("name", ["EXR", "EXR_H265_MKV"])
def test_only_video_deliverables_have_specs(name: str) -> None:
    with pytest.raises(ValueError, match="not a video deliverable"):
        video_spec(name)


ENCODERS_SAMPLE = """\
Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ------
 V....D a64multi             Multicolor charset for Commodore 64 (codec a64_multi)
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC (codec h264)
 V..X.. libaom-av1           libaom AV1 (codec av1)
 A....D aac                  AAC (Advanced Audio Coding)
 S..... ass                  ASS (Advanced SubStation Alpha) subtitle
"""
FILTERS_SAMPLE = """\
Filters:
  T.. = Timeline support
  A = Audio input/output
  | = Source or sink filter
 ... abench            A->A       Benchmark part of a filtergraph.
 ... pad               V->V       Pad the input video.
 TS. unpremultiply     N->V       UnPreMultiply first stream with first plane of second stream.
 .SC zscale            V->V       Apply resizing, colorspace and bit depth conversion.
 ... nullsrc           |->V       Null video source, return unprocessed video frames.
"""


def test_parse_encoders_reads_only_the_listing() -> None:
    assert parse_encoders(ENCODERS_SAMPLE) == {"a64multi", "libx264", "libaom-av1"}
    assert parse_encoders(ENCODERS_SAMPLE, "A") == {"aac"}


def test_parse_filters() -> None:
    assert parse_filters(FILTERS_SAMPLE) == {"abench", "pad", "unpremultiply", "zscale", "nullsrc"}


def test_parse_ffmpeg_version() -> None:
    assert parse_ffmpeg_version("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000") == (
        "5.1.9-0+deb12u1"
    )
    assert parse_ffmpeg_version("Blender 3.4.1\n") is None


def test_progress_reader_yields_one_progress_per_block() -> None:
    reader = ProgressReader()
    lines = "frame=3\nfps=0.0\nout_time_us=100100\nspeed=N/A\nprogress=continue\n"
    lines += "frame=8\nout_time_us=N/A\nprogress=end\n"
    seen = [p for p in map(reader.feed, lines.splitlines()) if p is not None]
    assert [(p.frame, p.out_time_us, p.done) for p in seen] == [(3, 100100, False), (8, None, True)]


def info(encoders: set[str], filters: set[str] | None = None) -> FFmpegInfo:
    all_filters = {"zscale", "unpremultiply", "pad", "split", "extractplanes", "format", "scale"}
    return FFmpegInfo(
        path="/usr/bin/ffmpeg",
        version="5.1",
        encoders=frozenset(encoders),
        decoders=frozenset({"exr"}),
        filters=frozenset(all_filters if filters is None else filters),
    )


def test_missing_encoders_and_filters_are_named() -> None:
    no_aom = info({"libx264", "libvpx-vp9"})
    assert missing_for(Deliverable.EXR_AV1_MP4, no_aom) == ["encoder libaom-av1"]
    assert supported_deliverables(no_aom) == [Deliverable.EXR_264_MP4, Deliverable.EXR_VP9_WEBM]
    no_zimg = info({"libx264"}, {"pad", "split", "extractplanes", "format", "scale"})
    assert missing_for("EXR_264_MP4", no_zimg) == ["filter zscale", "filter unpremultiply"]
    assert supported_deliverables(no_zimg) == []


def test_probe_the_real_ffmpeg() -> None:
    found = probe_ffmpeg()
    assert found.path == "/usr/bin/ffmpeg"
    assert found.version.startswith("5.1")
    assert {"libx264", "libaom-av1", "libvpx-vp9", "libsvtav1"} <= found.encoders
    assert "aac" not in found.encoders  # audio encoders are not listed as video ones
    assert "exr" in found.decoders
    assert supported_deliverables(found) == [
        Deliverable.EXR_264_MP4,
        Deliverable.EXR_AV1_MP4,
        Deliverable.EXR_VP9_WEBM,
    ]
    listing = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    assert parse_encoders(listing) == found.encoders


def test_probe_a_missing_ffmpeg(tmp_path: Path) -> None:
    with pytest.raises(FFmpegNotFound, match="was not found"):
        probe_ffmpeg(str(tmp_path / "ffmpeg"))
    with pytest.raises(FFmpegNotFound, match="does not say it is FFmpeg"):
        probe_ffmpeg("true")
