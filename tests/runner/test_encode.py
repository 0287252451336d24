"""Real encodes of small EXR sequences with Debian's FFmpeg, checked with ffprobe and decoding.

Two sequences of 8 odd-sized (63x47) half-float RGBA frames as Blender writes them (ZIP,
premultiplied alpha): a left half of linear 0.18 grey and a right half of linear 1.0 grey,
once opaque and once under an animated vertical alpha ramp.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
import pytest

from runner.blender import BlenderBackend, blender_env, build_render_argv, check_render, run_render
from runner.encode import (
    EncodeFailed,
    EncodeInputError,
    EncodeProgress,
    EncodeResult,
    EncodeStopped,
    encode_preview,
    encode_video,
)
from runner.exr import ExrError, has_transparency, read_exr_info
from runner.ffmpeg import Deliverable

WIDTH, HEIGHT, FRAMES = 63, 47, 8
FPS = Fraction(30000, 1001)
VIDEO = [Deliverable.EXR_264_MP4, Deliverable.EXR_AV1_MP4, Deliverable.EXR_VP9_WEBM]
WITH_MATTE = [Deliverable.EXR_AV1_MP4, Deliverable.EXR_VP9_WEBM]
CODEC = {
    Deliverable.EXR_264_MP4: ("h264", "High 10"),
    Deliverable.EXR_AV1_MP4: ("av1", "Main"),
    Deliverable.EXR_VP9_WEBM: ("vp9", "Profile 2"),
}
MATTE_PIX_FMT = {Deliverable.EXR_AV1_MP4: "gray10le", Deliverable.EXR_VP9_WEBM: "yuv420p10le"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "video.md"


def write_exr(path: Path, rgba: np.ndarray, compression: Any = OpenEXR.ZIP_COMPRESSION) -> Path:
    channels = {name: rgba[..., i].astype(np.float16) for i, name in enumerate("RGBA")}
    header = {"compression": compression, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))
    return path


def grey_pattern() -> np.ndarray:
    rgba = np.ones((HEIGHT, WIDTH, 4), np.float32)
    rgba[:, : WIDTH // 2, :3] = 0.18
    return rgba


def ramp_alpha(frame: int) -> np.ndarray:
    """0 in the top rows, 1 in the bottom rows, a ramp between that moves down per frame."""
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None]
    return np.broadcast_to(np.clip((rows - 3 - frame) / 30, 0, 1), (HEIGHT, WIDTH))


def write_sequence(folder: Path, transparent: bool, first: int = 1) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for index in range(FRAMES):
        rgba = grey_pattern()
        if transparent:
            rgba[..., 3] = ramp_alpha(index)
            rgba[..., :3] *= rgba[..., 3:]  # premultiplied, as Blender writes it
        paths.append(write_exr(folder / f"frame_{first + index:06d}.exr", rgba))
    return paths


def hlg_code(linear: float) -> float:
    """BT.2100 HLG 10-bit limited-range code of scene-linear grey, 1.0 = 203 cd/m²."""
    scene = (linear * 203 / 1000) ** (1 / 1.2)  # inverse OOTF at 1000 cd/m² (gamma 1.2)
    a, b = 0.17883277, 1 - 4 * 0.17883277
    c = 0.5 - a * math.log(4 * a)
    signal = math.sqrt(3 * scene) if scene <= 1 / 12 else a * math.log(12 * scene - b) + c
    return 64 + 876 * signal


def ffprobe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def decode(path: Path, stream: int, pix_fmt: str, width: int = 64, height: int = 48) -> np.ndarray:
    """Frames × planes of one video stream, decoded in its own pixel format (no conversion)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:v:{stream}"]
        + ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
        capture_output=True,
        check=True,
    ).stdout
    samples = np.frombuffer(raw, np.uint16)
    luma = width * height
    chroma = luma // 4 if pix_fmt.startswith("yuv420") else 0
    frames = samples.reshape(-1, luma + 2 * chroma)
    return frames


def luma(frames: np.ndarray, width: int = 64, height: int = 48) -> np.ndarray:
    return frames[:, : width * height].reshape(-1, height, width)


def chroma(frames: np.ndarray, width: int = 64, height: int = 48) -> np.ndarray:
    n = width * height
    return frames[:, n:].reshape(-1, 2, height // 2, width // 2)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("exr")
    return {
        "opaque": write_sequence(root / "opaque", transparent=False),
        "transparent": write_sequence(root / "transparent", transparent=True),
    }


Encoded = Callable[[Deliverable, str], EncodeResult]


@pytest.fixture(scope="module")
def encoded(sequences: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    """``encoded(deliverable, "opaque" | "transparent")``: encoded once, then reused."""
    out = tmp_path_factory.mktemp("videos")
    workdir = tmp_path_factory.mktemp("encode-work")
    cache: dict[tuple[Deliverable, str], EncodeResult] = {}

    def encode(deliverable: Deliverable, kind: str) -> EncodeResult:
        if (deliverable, kind) not in cache:
            output = out / f"{kind}-{deliverable.value}"
            cache[deliverable, kind] = encode_video(
                sequences[kind], output, deliverable=deliverable, fps="29.97", workdir=workdir
            )
            assert list(workdir.iterdir()) == [], "frame links or pass logs left behind"
        return cache[deliverable, kind]

    return encode


# --- EXR reading ---------------------------------------------------------------------------


def test_transparency_is_read_from_the_exr_alpha(
    sequences: dict[str, list[Path]], tmp_path: Path
) -> None:
    assert has_transparency(sequences["transparent"])
    assert not has_transparency(sequences["opaque"])
    nearly = grey_pattern()
    nearly[5, 5, 3] = 0.99951171875  # the largest half below 1 still encodes as 1023
    assert not has_transparency([write_exr(tmp_path / "nearly.exr", nearly)])
    one_pixel = grey_pattern()
    one_pixel[46, 62, 3] = 0.999
    assert has_transparency(sequences["opaque"] + [write_exr(tmp_path / "one.exr", one_pixel)])
    rgb = tmp_path / "rgb.exr"
    with OpenEXR.File(
        {"compression": OpenEXR.ZIP_COMPRESSION}, {"RGB": grey_pattern()[..., :3]}
    ) as f:
        f.write(str(rgb))
    assert read_exr_info(rgb).alpha_channel is None
    assert not has_transparency([rgb])


def test_exr_info_and_unreadable_files(sequences: dict[str, list[Path]], tmp_path: Path) -> None:
    info = read_exr_info(sequences["opaque"][0])
    assert (info.width, info.height, info.alpha_channel) == (WIDTH, HEIGHT, "A")
    (tmp_path / "bad.exr").write_text("not an exr")
    with pytest.raises(ExrError, match="bad.exr"):
        read_exr_info(tmp_path / "bad.exr")


def test_frames_of_different_sizes_are_refused(
    sequences: dict[str, list[Path]], tmp_path: Path
) -> None:
    small = write_exr(tmp_path / "small.exr", np.ones((10, 10, 4), np.float32))
    with pytest.raises(EncodeInputError, match="small.exr is 10x10 but frame_000001.exr is 63x47"):
        encode_video(
            [*sequences["opaque"], small],
            tmp_path / "x.mp4",
            deliverable=Deliverable.EXR_264_MP4,
            fps=24,
            workdir=tmp_path / "work",
        )
    with pytest.raises(EncodeInputError, match="no EXR frames"):
        encode_video([], tmp_path / "x.mp4", deliverable="EXR_264_MP4", fps=24, workdir=tmp_path)


# --- what ffprobe sees -----------------------------------------------------------------------


@pytest.mark.ffmpeg
@pytest.mark.parametrize("kind", ["transparent", "opaque"])
@pytest.mark.parametrize("deliverable", VIDEO)
def test_stream_facts(encoded: Encoded, deliverable: Deliverable, kind: str) -> None:
    result = encoded(deliverable, kind)
    probe = ffprobe(result.output)
    colour, *others = probe["streams"]
    assert (colour["codec_name"], colour["profile"]) == CODEC[deliverable]
    assert colour["pix_fmt"] == "yuv420p10le"
    assert colour["color_transfer"] == "arib-std-b67"
    assert colour["color_primaries"] == "bt2020"
    assert colour["color_space"] == "bt2020nc"
    assert colour["color_range"] == "tv"
    assert (colour["width"], colour["height"]) == (64, 48)  # 63x47 padded to even
    assert colour["r_frame_rate"] == "30000/1001"
    assert colour["disposition"]["default"] == 1
    assert result.fps == FPS and (result.width, result.height) == (64, 48)
    expect_matte = kind == "transparent" and deliverable in WITH_MATTE
    assert result.has_matte == expect_matte
    assert len(others) == (1 if expect_matte else 0)
    if deliverable.value.endswith("MP4"):
        assert colour["avg_frame_rate"] == "30000/1001"
        assert int(colour["nb_frames"]) == FRAMES
        duration = Fraction(colour["duration_ts"]) * Fraction(colour["time_base"])
        assert duration == Fraction(FRAMES * 1001, 30000)  # exactly 8 frames of 1001/30000 s
    if expect_matte:
        (matte,) = others
        assert matte["codec_name"] == colour["codec_name"]
        assert matte["pix_fmt"] == MATTE_PIX_FMT[deliverable]
        assert matte["color_range"] == "pc"
        assert (matte["width"], matte["height"]) == (64, 48)
        assert matte["r_frame_rate"] == "30000/1001"
        assert matte["disposition"]["default"] == 0
        tags = {key.lower(): value for key, value in matte["tags"].items()}
        marker = tags.get("title") if deliverable == Deliverable.EXR_VP9_WEBM else None
        assert (marker or tags["handler_name"]) == "Alpha matte"
        format_tags = {key.lower(): value for key, value in probe["format"]["tags"].items()}
        assert "alpha matte" in format_tags["comment"]


def mp4_colr_boxes(data: bytes) -> list[tuple[int, int, int, int]]:
    """(primaries, transfer, matrix, full range) of each ``colr``/``nclx`` box before mdat."""
    head = data[: data.find(b"mdat")]
    found = []
    for match in re.finditer(b"colrnclx", head):
        primaries, transfer, matrix, full = struct.unpack(
            ">HHHB", head[match.end() : match.end() + 7]
        )
        found.append((primaries, transfer, matrix, full >> 7))
    return found


def _ebml_size(data: bytes, pos: int) -> tuple[int, int]:
    first, length, mask = data[pos], 1, 0x80
    while not first & mask:
        mask >>= 1
        length += 1
    value = first & (mask - 1)
    for byte in data[pos + 1 : pos + length]:
        value = value << 8 | byte
    return value, length


def matroska_colours(data: bytes) -> list[dict[int, int]]:
    """The children of each Matroska ``Colour`` element (ID 0x55B0) before the first cluster."""
    head = data[: data.find(b"\x1f\x43\xb6\x75")]
    colours = []
    for match in re.finditer(b"\x55\xb0", head):
        size, length = _ebml_size(head, match.end())
        body = head[match.end() + length : match.end() + length + size]
        fields, pos = {}, 0
        while pos < len(body):
            element = int.from_bytes(body[pos : pos + 2], "big")
            child_size, child_length = _ebml_size(body, pos + 2)
            start = pos + 2 + child_length
            fields[element] = int.from_bytes(body[start : start + child_size], "big")
            pos = start + child_size
        colours.append(fields)
    return colours


@pytest.mark.ffmpeg
@pytest.mark.parametrize("deliverable", VIDEO)
def test_colour_tags_are_in_the_container(encoded: Encoded, deliverable: Deliverable) -> None:
    data = encoded(deliverable, "transparent").output.read_bytes()
    if deliverable == Deliverable.EXR_VP9_WEBM:
        colour, matte = matroska_colours(data)
        # MatrixCoefficients 9, Range 1 (broadcast), TransferCharacteristics 18, Primaries 9
        assert {k: colour[k] for k in (0x55B1, 0x55B9, 0x55BA, 0x55BB)} == {
            0x55B1: 9, 0x55B9: 1, 0x55BA: 18, 0x55BB: 9,
        }  # fmt: skip
        assert matte[0x55B9] == 2  # full range
    else:
        assert mp4_colr_boxes(data) == [(9, 18, 9, 0)]  # only the colour track is tagged


# --- what decoding gives back ------------------------------------------------------------------


def check_grey_patches(y: np.ndarray, uv: np.ndarray, rows: slice) -> None:
    low, high = hlg_code(0.18), hlg_code(1.0)
    assert low == pytest.approx(64 + 876 * 0.436, abs=1)  # ~43.6 % of the HLG signal
    assert high == pytest.approx(64 + 876 * 0.75, abs=0.5)  # reference white, 75 %
    assert np.abs(y[:, rows, 2:28] - low).max() <= 3
    assert np.abs(y[:, rows, 36:62] - high).max() <= 3
    assert np.abs(uv.astype(int) - 512).max() <= 3


@pytest.mark.ffmpeg
@pytest.mark.parametrize("deliverable", VIDEO)
def test_grey_patterns_decode_to_hlg_code_values(
    encoded: Encoded, deliverable: Deliverable
) -> None:
    frames = decode(encoded(deliverable, "opaque").output, 0, "yuv420p10le")
    assert len(frames) == FRAMES
    y, uv = luma(frames), chroma(frames)
    check_grey_patches(y, uv, slice(0, 47))
    assert np.abs(y[:, 47, :].astype(int) - 64).max() <= 3  # padded row: black
    assert np.abs(y[:, :, 63].astype(int) - 64).max() <= 3  # padded column: black


@pytest.mark.ffmpeg
@pytest.mark.parametrize("deliverable", WITH_MATTE)
def test_colour_is_unpremultiplied_when_the_matte_travels(
    encoded: Encoded, deliverable: Deliverable
) -> None:
    frames = decode(encoded(deliverable, "transparent").output, 0, "yuv420p10le")
    # Rows 16–46 have alpha ≥ 0.2 in every frame: straight colour is the plain grey again.
    check_grey_patches(luma(frames), chroma(frames), slice(16, 47))


@pytest.mark.ffmpeg
def test_h264_of_a_transparent_render_is_composited_over_black(encoded: Encoded) -> None:
    frames = decode(encoded(Deliverable.EXR_264_MP4, "transparent").output, 0, "yuv420p10le")
    y = luma(frames)
    for index in range(FRAMES):
        alpha = float(ramp_alpha(index)[30, 0])
        assert 0.3 < alpha < 1
        assert abs(float(np.median(y[index, 30, 36:62])) - hlg_code(alpha)) <= 4
        assert abs(float(np.median(y[index, 0, :62])) - 64) <= 3  # alpha 0: black


@pytest.mark.ffmpeg
@pytest.mark.parametrize("deliverable", WITH_MATTE)
def test_matte_decodes_to_the_exr_alpha(
    encoded: Encoded, sequences: dict[str, list[Path]], deliverable: Deliverable
) -> None:
    frames = decode(encoded(deliverable, "transparent").output, 1, MATTE_PIX_FMT[deliverable])
    assert len(frames) == FRAMES
    matte = luma(frames) / 1023
    for index, path in enumerate(sequences["transparent"]):
        exr_alpha = OpenEXR.File(str(path), separate_channels=True).channels()["A"].pixels
        error = np.abs(matte[index, :HEIGHT, :WIDTH] - exr_alpha).max()
        assert error <= 0.02  # required
        assert error <= 1 / 1023  # delivered: the matte is lossless, only rounded to 10 bits
    assert matte[:, HEIGHT, :].max() == 0  # padding is transparent
    assert matte[:, :, WIDTH].max() == 0
    if deliverable == Deliverable.EXR_VP9_WEBM:
        assert np.abs(chroma(frames).astype(int) - 512).max() <= 2


# --- the executor: progress, failures, stopping, preview --------------------------------------


@pytest.mark.ffmpeg
def test_progress_covers_both_passes(sequences: dict[str, list[Path]], tmp_path: Path) -> None:
    seen: list[EncodeProgress] = []
    result = encode_video(
        sequences["opaque"],
        tmp_path / "out" / "shot.mp4",
        deliverable=Deliverable.EXR_264_MP4,
        fps=Fraction(24),
        bitrate_kbps=300,
        workdir=tmp_path / "work",
        on_progress=seen.append,
    )
    assert result.bitrate_kbps == 300 and not result.has_matte
    assert ffprobe(result.output)["streams"][0]["r_frame_rate"] == "24/1"
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions)
    assert {p.pass_number for p in seen} == {1, 2}
    assert seen[-1].frame == FRAMES and fractions[-1] == 1.0
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "shot.mp4", "work"]


@pytest.mark.ffmpeg
def test_ffmpeg_failure_names_the_cause_and_cleans_up(
    sequences: dict[str, list[Path]], tmp_path: Path
) -> None:
    # OpenEXR reads ZSTD-compressed EXRs; FFmpeg 5.1 cannot, and without -xerror it would
    # skip that frame and exit 0.
    zstd = write_exr(tmp_path / "zstd.exr", grey_pattern(), OpenEXR.ZSTD_COMPRESSION)
    with pytest.raises(EncodeFailed) as failure:
        encode_video(
            [*sequences["transparent"][:2], zstd, *sequences["transparent"][2:]],
            tmp_path / "out" / "shot.webm",
            deliverable=Deliverable.EXR_VP9_WEBM,
            fps=24,
            workdir=tmp_path / "work",
        )
    message = str(failure.value)
    assert message.startswith("ffmpeg EXR_VP9_WEBM pass 1 of 2 exited with code 1")
    assert "Compression 13 is not implemented" in message
    assert list((tmp_path / "work").iterdir()) == []
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.ffmpeg
def test_stop_ends_the_encode_and_cleans_up(
    sequences: dict[str, list[Path]], tmp_path: Path
) -> None:
    stop = threading.Event()
    with pytest.raises(EncodeStopped):
        encode_video(
            sequences["transparent"],
            tmp_path / "shot.mp4",
            deliverable=Deliverable.EXR_AV1_MP4,
            fps=24,
            workdir=tmp_path / "work",
            on_progress=lambda progress: stop.set(),
            stop=stop,
        )
    assert list((tmp_path / "work").iterdir()) == []
    assert not (tmp_path / "shot.mp4").exists()


@pytest.mark.ffmpeg
def test_preview_is_small_8_bit_sdr_and_labelled(
    sequences: dict[str, list[Path]], tmp_path: Path
) -> None:
    result = encode_preview(
        sequences["transparent"], tmp_path / "preview.mp4", fps=FPS, workdir=tmp_path / "work"
    )
    probe = ffprobe(result.output)
    (stream,) = probe["streams"]
    assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
    assert stream["profile"] == "High"
    assert (stream["color_transfer"], stream["color_primaries"]) == ("bt709", "bt709")
    assert (stream["width"], stream["height"]) == (64, 48)
    assert stream["r_frame_rate"] == "30000/1001"
    assert "preview" in probe["format"]["tags"]["title"]
    assert "not a deliverable" in probe["format"]["tags"]["title"]
    assert list((tmp_path / "work").iterdir()) == []


# --- the commands in docs/video.md ----------------------------------------------------------


def documented_ffmpeg_commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", DOCS.read_text(), re.DOTALL)
    commands = [shlex.split(block.replace("\\\n", " ")) for block in blocks]
    return [argv for argv in commands if argv and argv[0] in ("ffmpeg", "ffprobe")]


@pytest.mark.ffmpeg
def test_documented_commands_work(
    encoded: Encoded, sequences: dict[str, list[Path]], tmp_path: Path
) -> None:
    for path in sequences["transparent"]:
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(encoded(Deliverable.EXR_VP9_WEBM, "transparent").output, tmp_path / "shot.webm")
    shutil.copy(encoded(Deliverable.EXR_AV1_MP4, "transparent").output, tmp_path / "shot.mp4")
    commands = documented_ffmpeg_commands()
    assert len(commands) >= 4
    for argv in commands:
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr}"
    # The matte PNGs hold the EXR alpha, the ProRes file keeps colour and alpha in 10 bits.
    alpha = OpenEXR.File(str(sequences["transparent"][0]), separate_channels=True)
    exr_alpha = alpha.channels()["A"].pixels
    png = decode(tmp_path / "matte_0001.png", 0, "gray16le")
    assert np.abs(luma(png)[0, :HEIGHT, :WIDTH] / 65535 - exr_alpha).max() <= 0.02
    prores = ffprobe(tmp_path / "shot_alpha.mov")["streams"][0]
    assert prores["pix_fmt"].startswith("yuva444p1")
    assert prores["color_transfer"] == "arib-std-b67"
    sdr = ffprobe(tmp_path / "sdr.mp4")["streams"][0]
    assert (sdr["pix_fmt"], sdr["width"], sdr["height"]) == ("yuv420p", 64, 48)
    assert (sdr["color_transfer"], sdr["color_primaries"], sdr["color_space"]) == ("bt709",) * 3
    assert int(sdr["nb_frames"]) == FRAMES


# --- frames rendered by Blender itself --------------------------------------------------------


@pytest.mark.blender
@pytest.mark.ffmpeg
def test_a_transparent_blender_render_keeps_its_alpha(
    make_scene: Callable[..., Path], bpy_backend: BlenderBackend, tmp_path: Path
) -> None:
    scene = make_scene(
        bpy_backend, tmp_path / "scene.blend", frame_end=6, size=47, samples=4, transparent=True
    )
    argv = build_render_argv(
        bpy_backend, blend_file=scene, output_dir=tmp_path / "frames", frames=range(1, 7)
    )
    render = run_render(argv, env=blender_env(tmp_path / "home"))
    check_render(render, range(1, 7))
    frames = [render.saved[frame] for frame in range(1, 7)]
    assert has_transparency(frames)
    for deliverable in WITH_MATTE:
        result = encode_video(
            frames,
            tmp_path / f"shot{deliverable.value}",
            deliverable=deliverable,
            fps=24,
            workdir=tmp_path / "work",
        )
        assert result.has_matte and (result.width, result.height) == (48, 48)
        matte = luma(decode(result.output, 1, MATTE_PIX_FMT[deliverable], 48, 48), 48, 48)
        for index, path in enumerate(frames):
            exr_alpha = OpenEXR.File(str(path), separate_channels=True).channels()["A"].pixels
            assert exr_alpha.min() == 0 and exr_alpha.max() == 1
            assert ((exr_alpha > 0.05) & (exr_alpha < 0.95)).any()  # soft edges too
            assert np.abs(matte[index, :47, :47] / 1023 - exr_alpha).max() <= 0.02
