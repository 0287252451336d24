"""Frame ranges in Flamenco's syntax (``1-10``, ``1..10``, ``1-3,7,10-12``) and chunking."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MAX_FRAMES = 100_000
"""More frames than this in one job is almost certainly a typo (``1-1000000``)."""

_PART = re.compile(r"^(-?\d+)(?:\s*(?:-|\.\.)\s*(-?\d+))?$")


class FrameRangeError(ValueError):
    """A frame range that cannot be parsed; the message says what to write instead."""


def parse_frame_range(text: str, *, max_frames: int = MAX_FRAMES) -> list[int]:
    """Return the sorted, de-duplicated frames of ``text``."""
    if not isinstance(text, str) or not text.strip():
        raise FrameRangeError("the frame range is empty; write frames like '1-10' or '1,3,5-8'")
    frames: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        match = _PART.match(part)
        if not match:
            raise FrameRangeError(
                f"cannot read {part!r} in frame range {text!r}; "
                "write frames like '1-10', '1..10' or '1,3,5-8'"
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise FrameRangeError(
                f"{part!r} in frame range {text!r} ends before it starts; write '{end}-{start}'"
            )
        if end - start + 1 + len(frames) > max_frames:
            raise FrameRangeError(
                f"frame range {text!r} has more than {max_frames} frames; "
                "split it into several jobs"
            )
        frames.update(range(start, end + 1))
    return sorted(frames)


def chunk_frames(frames: Sequence[int], chunk_size: int) -> list[list[int]]:
    """Split sorted frames into consecutive chunks of at most ``chunk_size`` frames."""
    if chunk_size < 1:
        raise FrameRangeError(f"chunk size must be at least 1, not {chunk_size}")
    return [list(frames[i : i + chunk_size]) for i in range(0, len(frames), chunk_size)]


def format_frames(frames: Iterable[int]) -> str:
    """Name frames compactly: ``1-3``, ``10``, ``9,10``, ``9,10,20,21``, ``1-3,7``."""
    ordered = sorted(set(frames))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        run = ordered[i : j + 1]
        if len(run) >= 3:
            parts.append(f"{run[0]}-{run[-1]}")
        else:
            parts.extend(str(f) for f in run)
        i = j + 1
    return ",".join(parts)
