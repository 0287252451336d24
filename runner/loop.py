"""The runner's loop: register, heartbeat, claim, render, report."""

from __future__ import annotations

import logging
import platform
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import __version__
from runner.blender import (
    BlenderBackend,
    RenderEvent,
    RenderFailed,
    blender_env,
    build_render_argv,
    check_render,
    run_render,
)
from runner.client import ManagerClient
from runner.errors import ManagerRejected, ManagerUnreachable, RunnerError, TaskGone
from runner.workspace import Workspace

log = logging.getLogger("framefarm.runner")
CLAIM_WAIT = 30.0
MAX_BACKOFF = 30.0


@dataclass
class StopControl:
    """First request: finish the current task, then exit. Second: abort it and hand it back."""

    finish: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)

    def request(self) -> None:
        if self.finish.is_set():
            self.abort.set()
        self.finish.set()


class TaskAborted(RunnerError):
    """The runner is quitting: the task is handed back unfinished."""


class TaskStopped(RunnerError):
    """The manager asked to stop the task (its job was canceled, paused or failed)."""


class Runner:
    def __init__(
        self,
        client: ManagerClient,
        backend: BlenderBackend,
        workspace: Workspace,
        *,
        name: str,
        stop: StopControl | None = None,
        threads: int | None = None,
        tags: list[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.backend = backend
        self.workspace = workspace
        self.name = name
        self.stop = stop or StopControl()
        self.threads = threads
        self.tags = tags
        self._sleep = sleep
        self.heartbeat_interval = 5.0

    # -- life cycle -----------------------------------------------------------------------

    def run(self, *, max_tasks: int | None = None) -> None:
        self.register()
        heartbeat = threading.Thread(target=self._heartbeat_forever, name="heartbeat", daemon=True)
        heartbeat.start()
        done = 0
        backoff = 1.0
        while not self.stop.finish.is_set() and (max_tasks is None or done < max_tasks):
            try:
                task = self._claim_until_stopped()
                backoff = 1.0
            except ManagerUnreachable as exc:
                log.warning("%s; retrying in %.0f s", exc, backoff)
                self.stop.finish.wait(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if task is None:
                continue
            self.execute(task)
            done += 1
        log.info("runner %s stopped", self.name)

    def _claim_until_stopped(self) -> dict[str, Any] | None:
        """Long-poll for a task in a helper thread, so that a stop request is not held up."""
        result: Future[dict[str, Any] | None] = Future()

        def claim() -> None:
            try:
                result.set_result(self.client.claim(wait=CLAIM_WAIT))
            except BaseException as exc:
                result.set_exception(exc)

        threading.Thread(target=claim, name="claim", daemon=True).start()
        while not result.done():
            if self.stop.finish.wait(0.1) and not result.done():
                # A task claimed after this point is handed back by the sweeper's lease expiry,
                # or at once when this runner registers again.
                result.add_done_callback(self._release_late_claim)
                return None
        return result.result()

    def _release_late_claim(self, result: Future[dict[str, Any] | None]) -> None:
        try:
            task = result.result()
        except BaseException:
            return
        if task is not None:
            self._report(lambda: self.client.release(int(task["id"]), "the runner is stopping"))

    def register(self) -> None:
        backoff = 1.0
        info = {
            "name": self.name,
            "version": __version__,
            "platform": platform.platform(),
            "blender": {
                "kind": self.backend.kind,
                "version": self.backend.version,
                "path": self.backend.path,
            },
            "task_types": ["blender"],
            "tags": self.tags,
        }
        while True:
            try:
                reply = self.client.register(info)
                break
            except ManagerUnreachable as exc:
                if self.stop.finish.is_set():
                    raise
                log.warning("%s; retrying in %.0f s", exc, backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self.heartbeat_interval = float(reply["heartbeat_interval"])
        log.info(
            "registered as %s (id %s) with %s using %s",
            self.name,
            reply["id"],
            self.client.base_url,
            self.backend.label,
        )

    def _heartbeat_forever(self) -> None:
        while not self.stop.abort.wait(self.heartbeat_interval):
            try:
                self.client.heartbeat()
            except RunnerError as exc:
                log.warning("heartbeat failed: %s", exc)

    # -- one task -------------------------------------------------------------------------

    def execute(self, task: dict[str, Any]) -> None:
        task_id = int(task["id"])
        job = task["job"]
        log.info("task %s (%s) of job %s: %s", task_id, task["name"], job["id"], job["name"])
        try:
            for command in task["commands"]:
                if command["name"] != "blender-render":
                    raise RunnerError(f"this runner cannot run {command['name']!r} commands")
                self._render(task, job, command["parameters"])
            self.client.complete(task_id)
            log.info("task %s completed", task_id)
        except TaskStopped as exc:
            reason = str(exc)
            log.warning("task %s stopped: %s", task_id, reason)
            self._report(lambda: self.client.release(task_id, reason))
        except TaskGone as exc:
            log.warning("task %s stopped: %s", task_id, exc.message)
        except TaskAborted as exc:
            reason = str(exc)
            log.warning("task %s aborted: %s", task_id, reason)
            self._report(lambda: self.client.release(task_id, reason))
        except (RenderFailed, RunnerError) as exc:
            reason = str(exc)
            log.error("task %s failed: %s", task_id, reason)
            self._report(lambda: self.client.fail(task_id, reason))
        finally:
            self.workspace.remove_task_dirs(int(job["id"]), [task_id])

    def _report(self, send: Callable[[], None]) -> None:
        try:
            send()
        except RunnerError as exc:
            log.error("could not tell the manager: %s", exc)

    def _render(self, task: dict[str, Any], job: dict[str, Any], params: dict[str, Any]) -> None:
        task_id = int(task["id"])
        files = self.workspace.prepare_job(self.client, job)
        out_dir = self.workspace.task_output_dir(int(job["id"]), task_id)
        frames = [int(f) for f in params["frames"]]
        argv = build_render_argv(
            self.backend,
            blend_file=files / params["blend_file"],
            output_dir=out_dir,
            frames=frames,
            scene=params.get("scene"),
            threads=self.threads,
        )
        task_stop = threading.Event()
        progress = _TaskProgress(self.client, task_id, stop=task_stop)
        uploads: list[Future[None]] = []

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as uploader:

            def on_event(event: RenderEvent) -> None:
                if event.name == "saved" and event.frame is not None:
                    path = Path(str(event.data["path"]))
                    uploads.append(
                        uploader.submit(
                            self.client.upload_output,
                            task_id,
                            path,
                            name=path.name,
                            frame=event.frame,
                        )
                    )
                elif event.name == "frame_finished":
                    seconds = float(event.data.get("seconds", 0.0))
                    log.info("task %s: frame %s rendered in %.2f s", task_id, event.frame, seconds)
                    progress.frame_finished(f"rendered frame {event.frame}")
                elif event.name == "error":
                    log.error("Blender: %s", event.data.get("message"))

            watcher = threading.Thread(
                target=_watch_task, args=(self.stop.abort, task_stop, progress), daemon=True
            )
            watcher.start()
            progress.send(activity=f"rendering frames {task['name']} with {self.backend.label}")
            result = run_render(
                argv,
                env=blender_env(self.workspace.blender_home),
                on_event=on_event,
                on_output_line=progress.log_line,
                stop=task_stop,
                cwd=files,
            )
            task_stop.set()  # ends the watcher
            if self.stop.abort.is_set():
                raise TaskAborted("the runner is shutting down")
            if progress.stopped:
                raise TaskStopped(progress.stop_reason or "the manager asked to stop this task")
            check_render(result, frames)
            for upload in uploads:
                upload.result()
        progress.send(activity="all frames uploaded")


KEEP_RUNNING_CHECK_S = 2.0
"""While Blender renders, ask the manager this often whether to go on (stop within 5 s)."""


def _watch_task(
    abort: threading.Event, task_stop: threading.Event, progress: _TaskProgress
) -> None:
    """Stop the render when the runner aborts, or when the manager says to stop."""
    while not task_stop.is_set():
        if abort.wait(0.2):
            task_stop.set()
        elif time.monotonic() - progress.last_sent > KEEP_RUNNING_CHECK_S:
            progress.send()


class _TaskProgress:
    """Collects Blender's output lines and frame counts, and sends them to the manager."""

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
                reply = self.client.progress(
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
