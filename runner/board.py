"""What the runner is doing, kept for its console: a thread-safe board and its snapshots.

The task loop, the render command, the report queue and the log handler write here; the
console only reads ``snapshot()``, so the screen can be drawn (and tested) from plain data.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RECENT_LOG_LINES = 8
FINISHED_TASKS_SHOWN = 8


@dataclass
class FrameView:
    frame: int
    state: str = "waiting"  # waiting, rendering, saved, done
    sample: int = 0
    samples: int = 0
    started_at: float | None = None
    seconds: float | None = None


@dataclass
class TaskView:
    task_id: int
    task_name: str
    job_id: int
    job_name: str
    started_at: float
    frames: dict[int, FrameView] = field(default_factory=dict)
    activity: str = ""
    device: str = ""


@dataclass
class FinishedTask:
    task_id: int
    task_name: str
    job_name: str
    seconds: float
    result: str  # completed, failed, released, stopped
    reason: str = ""


@dataclass
class LogLine:
    at: float
    level: int
    message: str


@dataclass
class BoardSnapshot:
    name: str
    manager: str
    state: str
    devices: list[str]
    blender: str
    tasks: dict[int, TaskView]
    finished: list[FinishedTask]
    log: list[LogLine]
    errors: int
    reports_waiting: int
    manager_reachable: bool


class RunnerBoard:
    """The runner's state for the console; every method may be called from any thread."""

    def __init__(
        self, *, name: str = "", manager: str = "", clock: Callable[[], float] = time.time
    ):
        self.clock = clock
        self._lock = threading.Lock()
        self._name = name
        self._manager = manager
        self._state = "starting"
        self._devices: list[str] = []
        self._blender = ""
        self._tasks: dict[int, TaskView] = {}
        self._finished: deque[FinishedTask] = deque(maxlen=FINISHED_TASKS_SHOWN)
        self._log: deque[LogLine] = deque(maxlen=RECENT_LOG_LINES)
        self._errors = 0
        self._reports_waiting = 0
        self._reachable = True

    def describe(self, *, name: str, manager: str, devices: list[str], blender: str) -> None:
        with self._lock:
            self._name, self._manager = name, manager
            self._devices, self._blender = list(devices), blender

    def set_state(self, state: str) -> None:
        with self._lock:
            self._state = state

    def set_reports(self, waiting: int, reachable: bool) -> None:
        with self._lock:
            self._reports_waiting, self._reachable = waiting, reachable

    def task_started(self, slot: int, task: dict[str, Any]) -> None:
        job = task.get("job") or {}
        frames = [int(f) for f in task.get("frames") or []]
        view = TaskView(
            task_id=int(task["id"]),
            task_name=str(task.get("name", "")),
            job_id=int(job.get("id", 0)),
            job_name=str(job.get("name", "")),
            started_at=self.clock(),
            frames={frame: FrameView(frame) for frame in frames},
        )
        with self._lock:
            self._tasks[slot] = view

    def task_activity(self, slot: int, activity: str) -> None:
        with self._lock:
            if slot in self._tasks:
                self._tasks[slot].activity = activity

    def render_event(self, slot: int, name: str, data: dict[str, Any]) -> None:
        """Apply one render.py event (frame_started, samples, saved, frame_finished, ready)."""
        now = self.clock()
        with self._lock:
            view = self._tasks.get(slot)
            if view is None:
                return
            if name == "ready":
                view.device = str(data.get("device_label") or data.get("device") or "")
                return
            frame = data.get("frame")
            if not isinstance(frame, int):
                return
            fv = view.frames.setdefault(frame, FrameView(frame))
            if name == "frame_started":
                fv.state, fv.started_at = "rendering", now
            elif name == "samples":
                fv.sample, fv.samples = int(data.get("sample", 0)), int(data.get("samples", 0))
            elif name == "saved":
                fv.state = "saved"
            elif name == "frame_finished":
                fv.state = "done"
                fv.seconds = float(data.get("seconds", 0.0))
                if fv.samples:
                    fv.sample = fv.samples

    def task_finished(self, slot: int, result: str, reason: str = "") -> None:
        with self._lock:
            view = self._tasks.pop(slot, None)
            if view is None:
                return
            self._finished.appendleft(
                FinishedTask(
                    view.task_id,
                    view.task_name,
                    view.job_name,
                    self.clock() - view.started_at,
                    result,
                    reason,
                )
            )

    def add_log(self, level: int, message: str) -> None:
        with self._lock:
            self._log.append(LogLine(self.clock(), level, message))
            if level >= logging.ERROR:
                self._errors += 1

    def snapshot(self) -> BoardSnapshot:
        with self._lock:
            return BoardSnapshot(
                name=self._name,
                manager=self._manager,
                # With several slots one may wait for work while another renders.
                state="rendering" if self._tasks and self._state == "idle" else self._state,
                devices=list(self._devices),
                blender=self._blender,
                tasks=copy.deepcopy(self._tasks),
                finished=list(self._finished),
                log=list(self._log),
                errors=self._errors,
                reports_waiting=self._reports_waiting,
                manager_reachable=self._reachable,
            )


class BoardLogHandler(logging.Handler):
    """Sends the runner's log records to the board's recent lines."""

    def __init__(self, board: RunnerBoard) -> None:
        super().__init__()
        self.board = board

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.board.add_log(record.levelno, record.getMessage())
        except Exception:  # logging must never take the runner down
            self.handleError(record)
