"""Persistent render sessions: one Blender process per job, with the scene loaded once.

Blender's start-up and scene load often cost more than a small frame. A ``SessionRenderer``
keeps ``blender_scripts/session.py`` running with the job's .blend loaded and sends it one
frame at a time, so that between any two frames it can decide to start afresh: when a frame
takes longer than ``slowdown`` × the median of the session's first frames (Blender can slow
down over many frames in one process), or when the process's resident memory passes a limit.
A session is never reused for another job, another file, scene, device or thread count, and
a failed or stopped frame ends it. ``SessionPool`` holds one slot's renderer between tasks
and closes a session left idle.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from runner.blender import (
    LAST_LINES_KEPT,
    BlenderBackend,
    RenderEvent,
    RenderResult,
    _record,
    parse_event_line,
)
from runner.renderer import RenderRequest
from runner.session_process import BlenderSession, resident_bytes, session_key, start_session

log = logging.getLogger("framefarm.runner")
EventCallback = Callable[[RenderEvent], None]
LineCallback = Callable[[str], None]


@dataclass(frozen=True)
class SessionPolicy:
    """When a session starts afresh; see the module docstring. None turns a limit off.

    A runner sets them with its ``--session-*`` flags (``runner.cli``), which check them.
    """

    baseline_frames: int = 3
    slowdown: float | None = 1.5
    min_slowdown_s: float = 0.5  # tiny frames vary by more than 1.5× under load
    memory_limit_bytes: int | None = None
    memory_growth: float | None = 2.0  # × the resident memory after the first frame
    idle_s: float = 120.0


class SessionRenderer:
    """Renders one job's requests in a kept Blender process (the ``Renderer`` protocol)."""

    def __init__(
        self,
        backend: BlenderBackend,
        *,
        job_id: int | None = None,
        policy: SessionPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.job_id = job_id
        self.policy = policy or SessionPolicy()
        self.clock = clock
        self.session: BlenderSession | None = None
        self.started = 0  # processes started, for logs, tests and benchmarks
        self.restarts: list[str] = []  # why each session was ended by the policy
        self._lock = threading.Lock()

    @property
    def warm(self) -> bool:
        return self.session is not None and self.session.process.poll() is None

    def close(self) -> None:
        with self._lock:
            self._end_session()

    def _end_session(self, *, kill: bool = False) -> int | None:
        session, self.session = self.session, None
        return None if session is None else session.close(kill=kill)

    def render(
        self,
        request: RenderRequest,
        *,
        on_event: EventCallback,
        on_output_line: LineCallback,
        stop: threading.Event,
    ) -> RenderResult:
        started = self.clock()
        result = RenderResult(returncode=0)
        last_lines: deque[str] = deque(maxlen=LAST_LINES_KEPT)
        announced = False

        def forward(event: RenderEvent) -> None:
            # One task is one render to the caller: one ready, one done, as render.py says.
            nonlocal announced
            if event.name == "ready" and not announced:
                announced = True
                on_event(event)
            elif event.name not in ("ready", "done", "session_ready"):
                on_event(event)

        with self._lock:
            for frame in request.frames:
                session = self._session_for(request)
                try:
                    session.send(request.output_dir, [frame])
                    outcome = self._await_frame(
                        session, result, last_lines, forward, on_output_line, stop
                    )
                except OSError:  # the process went away before it read the request
                    outcome = "exited"
                if outcome != "done":
                    result.stopped = outcome == "stopped"
                    code = self._end_session(kill=result.stopped)
                    if not result.stopped and code is not None:
                        result.returncode = code
                    break
                reason = self._restart_reason(session, frame)
                if reason is not None:
                    log.info("Blender session of job %s restarts: %s", self.job_id, reason)
                    self.restarts.append(reason)
                    self._end_session()
        if not result.errors and not result.stopped and set(request.frames) <= set(result.saved):
            on_event(RenderEvent("done", {"event": "done", "frames": request.frames}))
        result.last_lines = list(last_lines)
        result.seconds = self.clock() - started
        return result

    def _session_for(self, request: RenderRequest) -> BlenderSession:
        key = session_key(self.backend, request)
        session = self.session
        if session is not None and (session.key != key or session.process.poll() is not None):
            self._end_session()  # another file, scene or device (never reused), or it died
        if self.session is None:
            self.session = start_session(self.backend, request, key)
            self.started += 1
            log.info(
                "Blender session %d of job %s started (pid %d): %s",
                self.started,
                self.job_id,
                self.session.pid,
                request.blend_file.name,
            )
        return self.session

    def _await_frame(
        self,
        session: BlenderSession,
        result: RenderResult,
        last_lines: deque[str],
        on_event: EventCallback,
        on_output_line: LineCallback,
        stop: threading.Event,
    ) -> str:
        """Read the session's output until the frame is done: done, error, exited or stopped."""
        frame_started: float | None = None
        while True:
            if stop.is_set():
                return "stopped"
            try:
                line = session.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                return "exited"
            line = line.rstrip("\r\n")
            event = parse_event_line(line)
            if event is None:
                if line.strip():
                    last_lines.append(line)
                on_output_line(line)
                continue
            _record(result, event)
            on_event(event)
            if event.name == "frame_started":
                frame_started = self.clock()
            elif event.name == "frame_finished" and frame_started is not None:
                session.frame_seconds.append(self.clock() - frame_started)
            elif event.name == "error":
                return "error"
            elif event.name == "done":
                return "done"

    def _restart_reason(self, session: BlenderSession, frame: int) -> str | None:
        policy, times = self.policy, session.frame_seconds
        rss = resident_bytes(session.pid)
        session.first_rss = session.first_rss or rss
        if policy.slowdown is not None and len(times) > policy.baseline_frames:
            baseline = statistics.median(times[: policy.baseline_frames])
            if times[-1] > max(baseline * policy.slowdown, baseline + policy.min_slowdown_s):
                return (
                    f"frame {frame} took {times[-1]:.2f} s, more than {policy.slowdown:g}× the "
                    f"session's first frames ({baseline:.2f} s)"
                )
        limits = []
        if policy.memory_limit_bytes is not None:
            limits.append((policy.memory_limit_bytes, "the limit"))
        if policy.memory_growth is not None and session.first_rss:
            limits.append((int(session.first_rss * policy.memory_growth), "its growth limit"))
        for limit, name in limits:
            if rss is not None and rss > limit:
                return f"resident memory {rss >> 20} MiB passed {name} of {limit >> 20} MiB"
        return None


class SessionPool:
    """One slot's session renderer, kept between the tasks of one job; idle ones close."""

    def __init__(
        self, policy: SessionPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or SessionPolicy()
        self.clock = clock
        self.current: SessionRenderer | None = None
        self._lock = threading.Lock()
        self._idle_timer: threading.Timer | None = None

    @property
    def warm_job_id(self) -> int | None:
        """The job whose scene this slot holds loaded, for the claim's preference."""
        current = self.current
        return current.job_id if current is not None and current.warm else None

    def renderer(self, backend: BlenderBackend, job_id: int) -> SessionRenderer:
        with self._lock:
            self._cancel_idle_timer()
            current = self.current
            if current is not None and (current.backend != backend or current.job_id != job_id):
                current.close()  # sessions never cross jobs
                current = None
            if current is None:
                current = SessionRenderer(
                    backend, job_id=job_id, policy=self.policy, clock=self.clock
                )
                self.current = current
            return current

    def task_ended(self) -> None:
        """Start counting idle time: no task of the job for ``idle_s`` closes the session."""
        with self._lock:
            self._cancel_idle_timer()
            if self.current is None or not self.current.warm:
                return
            timer = threading.Timer(self.policy.idle_s, self._close_idle, args=(self.current,))
            timer.daemon = True
            self._idle_timer = timer
            timer.start()

    def _close_idle(self, renderer: SessionRenderer) -> None:
        with self._lock:
            if self.current is renderer:
                self.current = None
        renderer.close()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def close(self) -> None:
        with self._lock:
            self._cancel_idle_timer()
            current, self.current = self.current, None
        if current is not None:
            current.close()
