"""Reporting a running task to the manager, and stopping it when the manager says so."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from runner.client import ManagerClient
from runner.errors import ManagerRejected, ManagerUnreachable

log = logging.getLogger("framefarm.runner")

KEEP_RUNNING_CHECK_S = 2.0
"""While a task runs, ask the manager this often whether to go on (stops within 5 s)."""


class TaskProgress:
    """Collects output lines and frame counts, and sends them to the manager."""

    def __init__(self, client: ManagerClient, task_id: int, *, stop: threading.Event) -> None:
        self.client = client
        self.task_id = task_id
        self.stop = stop
        self.frames_done = 0
        self.lines: list[str] = []
        self.stopped = False
        self.stop_reason: str | None = None
        self.last_sent = time.monotonic()
        self._lock = threading.Lock()

    def log_line(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= 200 or time.monotonic() - self.last_sent > 2.0:
            self.send()

    def frame_finished(self, activity: str) -> None:
        self.frames_done += 1
        self.send(activity=activity)

    def send(self, *, activity: str | None = None) -> None:
        """Report (from the output reader or the watcher thread, one at a time)."""
        with self._lock:
            lines, self.lines = self.lines, []
            self.last_sent = time.monotonic()
            try:
                reply: dict[str, Any] = self.client.progress(
                    self.task_id, frames_done=self.frames_done, activity=activity, log=lines
                )
            except ManagerUnreachable as exc:
                log.warning("progress report failed: %s", exc)
                return
            except ManagerRejected as exc:
                log.warning("progress report refused: %s", exc)
                reply = {"keep_running": False, "reason": exc.message}
            if not reply["keep_running"]:
                self.stopped = True
                self.stop_reason = reply.get("reason")
                self.stop.set()


def watch_task(abort: threading.Event, task_stop: threading.Event, progress: TaskProgress) -> None:
    """Stop the task when the runner aborts, or when the manager says to stop."""
    while not task_stop.is_set():
        if abort.wait(0.2):
            task_stop.set()
        elif time.monotonic() - progress.last_sent > KEEP_RUNNING_CHECK_S:
            progress.send()
