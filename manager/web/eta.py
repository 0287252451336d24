"""How long a job still needs, from its own measured frame times.

ETA = mean of the recent frame times × frames left ÷ runners working on the job. A frame's
time is the gap between two outputs of one task (the first frame counts from the task's
start, so Blender's start-up is part of it, as it is of every task still to come).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

RECENT_FRAMES = 10


@dataclass(frozen=True)
class FrameTime:
    frame: int | None
    task_id: int
    finished_at: datetime
    seconds: float


def frame_times(
    task_starts: dict[int, datetime | None],
    outputs: Iterable[tuple[int | None, int | None, datetime]],
) -> list[FrameTime]:
    """Per-frame render times from ``(task_id, frame, created_at)`` of each output."""
    by_task: dict[int, list[tuple[datetime, int | None]]] = {}
    for task_id, frame, created_at in outputs:
        if task_id is not None:
            by_task.setdefault(task_id, []).append((created_at, frame))
    times = []
    for task_id, rows in by_task.items():
        previous = task_starts.get(task_id)
        for created_at, frame in sorted(rows, key=lambda row: row[0]):
            if previous is not None and created_at >= previous:
                seconds = (created_at - previous).total_seconds()
                times.append(FrameTime(frame, task_id, created_at, seconds))
            previous = created_at
    return sorted(times, key=lambda t: t.finished_at)


def estimate_eta(
    recent_seconds: Sequence[float], frames_left: int, runners_working: int
) -> float | None:
    """Seconds until the job is done; None when nothing is measured or nobody works on it."""
    if frames_left <= 0:
        return 0.0
    if not recent_seconds or runners_working <= 0:
        return None
    mean = sum(recent_seconds) / len(recent_seconds)
    return mean * frames_left / runners_working


def job_eta(times: Sequence[FrameTime], frames_left: int, runners_working: int) -> float | None:
    recent = [t.seconds for t in times[-RECENT_FRAMES:]]
    return estimate_eta(recent, frames_left, runners_working)
