"""Recognise a .blend file and read the Blender version that saved it, without Blender."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import zstandard

from manager.errors import InvalidInput

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
# Blender up to 4.x: "BLENDER" + pointer size (_ or -) + endianness (v or V) + "304".
_OLD_HEADER = re.compile(rb"^BLENDER[_-][vV](\d)(\d\d)")
# Blender 5.0+: "BLENDER" + header size "17" + "-" + format "01" + endianness + "0500".
_NEW_HEADER = re.compile(rb"^BLENDER\d\d-\d\d[vV](\d\d)(\d\d)")


def _header_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(64)
        if head.startswith(ZSTD_MAGIC):
            f.seek(0)
            reader = zstandard.ZstdDecompressor().stream_reader(f)
            try:
                return reader.read(64)
            except zstandard.ZstdError:
                return b""
        if head.startswith(GZIP_MAGIC):
            f.seek(0)
            try:
                return gzip.GzipFile(fileobj=io.BufferedReader(f)).read(64)  # type: ignore[arg-type]
            except (OSError, EOFError):
                return b""
        return head


def blend_file_version(path: Path) -> str:
    """Return e.g. ``"3.4"`` or ``"5.0"``; raise InvalidInput if ``path`` is not a .blend."""
    header = _header_bytes(path)
    match = _NEW_HEADER.match(header) or _OLD_HEADER.match(header)
    if not match:
        raise InvalidInput(
            "the uploaded file is not a .blend file (no Blender header); "
            "upload the scene saved from Blender",
            code="not_a_blend",
        )
    major, minor = int(match.group(1)), int(match.group(2))
    return f"{major}.{minor}"
