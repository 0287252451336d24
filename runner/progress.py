"""Reporting a running task to the manager, and stopping it when the manager says so."""

from __future__ import annotations

import threading
import time
from typing import Any

from runner.reports import ReportQueue

KEEP_RUNNING_CHECK_S = 2.0
"""While a task runs, ask the manager this often whether to go on (stops within 5 s)."""


class TaskProgress:
    """Collects output lines and frame counts, and queues them for the manager."""

    def __init__(self, reports: ReportQueue, task_id: int, *, stop: threading.Event) -> None:
        self.reports = reports
        self.task_id = task_id
        self.stop = stop
        self.frames_done = 0
        self.lines: list[str] = []
        self.stopped = False
        self.stop_reason: str | None = None
        self.last_sent = time.monotonic()
        self._unsent_activity: str | None = None
        self._lock = threading.Lock()
        reports.on_progress_reply(task_id, self._on_reply)

    def close(self) -> None:
        self.reports.on_progress_reply(self.task_id, None)

    def log_line(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            due = len(self.lines) >= 200 or time.monotonic() - self.last_sent > 2.0
        if due:
            self.send()

    def frame_finished(self, activity: str, *, report: bool = True) -> None:
        """Count a frame; ``report=False`` leaves it to the next report (a task's last frame:
        its completion follows at once)."""
        with self._lock:
            self.frames_done += 1
            self._unsent_activity = activity
        if report:
            self.send(activity=activity)

    def flush(self) -> None:
        """Send what no report has carried yet (output lines, a frame), if anything: a task's
        last report before its completion."""
        with self._lock:
            activity = self._unsent_activity
            pending = bool(self.lines) or activity is not None
        if pending:
            self.send(activity=activity or "done")

    def send(self, *, activity: str | None = None) -> None:
        """Queue a report (from the output reader or the watcher thread)."""
        with self._lock:
            lines, self.lines = self.lines, []
            self.last_sent = time.monotonic()
            self._unsent_activity = None
            fields: dict[str, Any] = {"frames_done": self.frames_done, "log": lines}
            if activity is not None:
                fields["activity"] = activity[:500]
            self.reports.put("progress", self.task_id, **fields)

    def _on_reply(self, _task_id: int, reply: dict[str, Any]) -> None:
        if not reply.get("keep_running", True):
            self.stopped = True
            self.stop_reason = reply.get("reason")
            self.stop.set()


def watch_task(abort: threading.Event, task_stop: threading.Event, progress: TaskProgress) -> None:
    """Stop the task when the runner aborts, or when the manager says to stop."""
    while not task_stop.is_set():
        if abort.wait(0.2):
            task_stop.set()
        elif (
            time.monotonic() - progress.last_sent > KEEP_RUNNING_CHECK_S
            and progress.reports.pending() == 0  # a report still waiting will bring the answer
        ):
            progress.send()
