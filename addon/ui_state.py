"""What the panels show between redraws: job types, the running submission, recent jobs.

Plain Python (no bpy). One ``FarmState`` lives while the add-on is enabled; the recent
jobs are fetched by a thread so a slow manager never stalls a redraw, and the panel reads
the last answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import client
from .submit_flow import SubmitFlow

JOBS_REFRESH_SECONDS = 3.0
PANEL_SEEN_SECONDS = 5.0


@dataclass
class FarmState:
    job_types: list[dict[str, Any]] = field(default_factory=list)
    manager_version: str | None = None
    connection_message: str = ""
    flow: SubmitFlow | None = None
    last_job: dict[str, Any] | None = None
    last_job_url: str = ""
    message: str = ""
    message_level: str = "INFO"
    warnings: list[str] = field(default_factory=list)
    recent_jobs: list[dict[str, Any]] = field(default_factory=list)
    recent_jobs_error: str = ""
    jobs_panel_seen_at: float = 0.0
    jobs_fetched_at: float = 0.0
    jobs_updated: bool = False
    _jobs_thread: threading.Thread | None = None

    def job_type(self, name: str) -> dict[str, Any] | None:
        return next((t for t in self.job_types if t["name"] == name), None)

    def say(self, level: str, message: str) -> None:
        self.message_level, self.message = level, message

    @property
    def submitting(self) -> bool:
        return self.flow is not None and not self.flow.finished

    def jobs_refresh_due(self, now: float | None = None) -> bool:
        """The "My jobs" list was drawn lately and its data is older than the period."""
        now = time.monotonic() if now is None else now
        busy = self._jobs_thread is not None and self._jobs_thread.is_alive()
        seen = now - self.jobs_panel_seen_at < PANEL_SEEN_SECONDS
        return seen and not busy and now - self.jobs_fetched_at >= JOBS_REFRESH_SECONDS

    def refresh_jobs(self, address: client.ManagerAddress, *, wait: bool = False) -> None:
        """Fetch recent jobs in a thread (``wait``: and wait for it)."""
        self.jobs_fetched_at = time.monotonic()
        self._jobs_thread = threading.Thread(target=self._fetch_jobs, args=(address,), daemon=True)
        self._jobs_thread.start()
        if wait:
            self._jobs_thread.join()

    def _fetch_jobs(self, address: client.ManagerAddress) -> None:
        try:
            self.recent_jobs = client.recent_jobs(address)
            self.recent_jobs_error = ""
        except client.FarmClientError as error:
            self.recent_jobs_error = str(error)
        self.jobs_updated = True
