"""The runner's loop: register, heartbeat, claim, render, report."""

from __future__ import annotations

import logging
import platform
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from runner import __version__
from runner.blender import BlenderBackend, RenderFailed
from runner.client import ManagerClient
from runner.commands import TaskContext, run_command
from runner.errors import ManagerUnreachable, RunnerError, TaskGone
from runner.progress import TaskProgress, watch_task
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
        backend: BlenderBackend | None,
        workspace: Workspace,
        *,
        name: str,
        stop: StopControl | None = None,
        threads: int | None = None,
        tags: list[str] | None = None,
        ffmpeg: str | None = None,
        capabilities: list[str] | None = None,
        only_task_types: list[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.backend = backend
        self.workspace = workspace
        self.name = name
        self.stop = stop or StopControl()
        self.threads = threads
        self.tags = tags
        self.ffmpeg = ffmpeg
        self.capabilities = capabilities or []
        self.only_task_types = only_task_types
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
            "blender": (
                {
                    "kind": self.backend.kind,
                    "version": self.backend.version,
                    "path": self.backend.path,
                }
                if self.backend
                else None
            ),
            "task_types": self.task_types,
            "capabilities": self.capabilities,
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
            "registered as %s (id %s) with %s: Blender %s, FFmpeg %s, can %s",
            self.name,
            reply["id"],
            self.client.base_url,
            self.backend.label if self.backend else "none",
            self.ffmpeg or "none",
            ", ".join(self.task_types + self.capabilities),
        )

    @property
    def task_types(self) -> list[str]:
        types = ["blender"] if self.backend is not None else []
        if self.ffmpeg is not None:
            types.append("ffmpeg")
        types = [*types, "file-management", "misc"]
        if self.only_task_types is not None:
            types = [t for t in types if t in self.only_task_types]
        return types

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
        task_stop = threading.Event()
        progress = TaskProgress(self.client, task_id, stop=task_stop)
        ctx = TaskContext(
            self.client,
            self.workspace,
            task,
            progress,
            task_stop,
            backend=self.backend,
            ffmpeg=self.ffmpeg,
            threads=self.threads,
        )
        watcher = threading.Thread(
            target=watch_task, args=(self.stop.abort, task_stop, progress), daemon=True
        )
        watcher.start()
        try:
            for spec in task["commands"]:
                run_command(ctx, spec)
                if self.stop.abort.is_set():
                    raise TaskAborted("the runner is shutting down")
                if progress.stopped:
                    raise TaskStopped(progress.stop_reason or "the manager asked to stop this task")
            progress.send(activity="done")  # the last output lines go with it
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
            if progress.stopped or self.stop.abort.is_set():
                reason = progress.stop_reason or "the runner is shutting down"
                self._report(lambda: self.client.release(task_id, reason))
            else:
                reason = str(exc)
                log.error("task %s failed: %s", task_id, reason)
                self._report(lambda: self.client.fail(task_id, reason))
        finally:
            task_stop.set()  # ends the watcher
            self.workspace.remove_task_dirs(int(job["id"]), [task_id])

    def _report(self, send: Callable[[], None]) -> None:
        try:
            send()
        except RunnerError as exc:
            log.error("could not tell the manager: %s", exc)
