"""All of a job's frames as one zip, streamed while it is written (no temp file).

EXR frames are compressed already, so members are stored, not deflated; a zip written to a
stream that cannot seek puts each member's sizes in a data descriptor after its bytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

READ_CHUNK = 1024 * 1024
ZIP64_FROM = 2**31


class _Sink:
    """A write-only file that hands what was written to the generator."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        chunks, self._chunks = self._chunks, []
        if chunks:
            yield b"".join(chunks)


def stream_zip(members: Iterable[tuple[str, Path]]) -> Iterator[bytes]:
    """Yield a zip of ``(name in the zip, file)`` members, piece by piece."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, path in members:
            stat = path.stat()
            info = zipfile.ZipInfo(name, datetime.fromtimestamp(stat.st_mtime).timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = stat.st_size
            with (
                path.open("rb") as source,
                archive.open(info, "w", force_zip64=stat.st_size >= ZIP64_FROM) as target,
            ):
                while chunk := source.read(READ_CHUNK):
                    target.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()
