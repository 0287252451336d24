"""The runner's loop: register, heartbeat, claim, render, report — in one or more slots."""

from __future__ import annotations

import logging
import platform
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from runner import __version__
from runner.blender import BlenderError
from runner.board import RunnerBoard
from runner.client import ManagerClient
from runner.commands import TaskContext, run_command
from runner.devices import CyclesDevice, DeviceChoice
from runner.errors import ManagerRejected, ManagerUnreachable, RunnerError
from runner.progress import TaskProgress, watch_task
from runner.reports import ReportQueue
from runner.session import SessionPolicy, SessionPool
from runner.versions import BlenderShelf
from runner.workspace import Workspace

log = logging.getLogger("framefarm.runner")
CLAIM_WAIT = 30.0
MAX_BACKOFF = 30.0
DRAIN_ON_EXIT_S = 60.0
LEFTOVER_WAIT_S = 30.0


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = MAX_BACKOFF) -> float:
    """Exponential backoff with full jitter, so restarted runners do not all call at once."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2**attempt)


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
        blenders: BlenderShelf | None,
        workspace: Workspace,
        *,
        name: str,
        reports: ReportQueue | None = None,
        board: RunnerBoard | None = None,
        stop: StopControl | None = None,
        threads: int | None = None,
        tags: list[str] | None = None,
        ffmpeg: str | None = None,
        capabilities: list[str] | None = None,
        only_task_types: list[str] | None = None,
        devices: list[CyclesDevice] | None = None,
        slot_devices: list[DeviceChoice] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        sessions: bool = True,
        session_policy: SessionPolicy | None = None,
    ) -> None:
        self.client = client
        self.blenders = blenders
        self.workspace = workspace
        self.name = name
        self.board = board or RunnerBoard(name=name, manager=client.base_url)
        self.reports = reports or ReportQueue(workspace.root / "reports", client)
        self.stop = stop or StopControl()
        self.threads = threads
        self.tags = tags
        self.ffmpeg = ffmpeg
        self.capabilities = capabilities or []
        self.only_task_types = only_task_types
        self.devices = devices or []
        self.slot_devices = slot_devices or [DeviceChoice()]
        # One kept Blender session per slot (runner.session); none with --no-sessions.
        self.sessions = [SessionPool(session_policy) for _ in self.slot_devices] if sessions else []
        self._sleep = sleep
        self.heartbeat_interval = 5.0
        self._done = 0
        self._done_lock = threading.Lock()
        self._register_lock = threading.Lock()
        self.fatal: RunnerError | None = None

    # -- life cycle -----------------------------------------------------------------------

    def run(self, *, max_tasks: int | None = None) -> None:
        self.board.set_state("registering")
        self._send_leftover_reports()
        self.register()
        self.reports.start()
        threading.Thread(target=self._heartbeat_forever, name="heartbeat", daemon=True).start()
        slots = [
            threading.Thread(target=self._slot_loop, args=(slot, max_tasks), name=f"slot-{slot}")
            for slot in range(len(self.slot_devices))
        ]
        for thread in slots:
            thread.start()
        for thread in slots:
            while thread.is_alive():
                thread.join(0.2)
        for pool in self.sessions:
            pool.close()
        self.board.set_state("sending reports")
        if not self.reports.wait_empty(DRAIN_ON_EXIT_S):
            log.warning(
                "%d reports could not be delivered; they stay in %s for the next start",
                self.reports.pending(),
                self.reports.folder,
            )
        self.reports.close()
        self.board.set_state("stopped")
        log.info("runner %s stopped", self.name)
        if self.fatal is not None:
            raise self.fatal

    def _send_leftover_reports(self) -> None:
        """Reports a previous run left (a crash, a manager that stayed away) go out before
        registering again: registering hands back every task the manager thinks is ours,
        and a finished one would then be rendered twice."""
        previous = self.reports.previous_runner(self.client.base_url)
        if not self.reports.pending() or previous is None:
            return
        log.info("sending %d reports left from the last run", self.reports.pending())
        self.client.runner_id = previous
        self.reports.start()
        if not self.reports.wait_empty(LEFTOVER_WAIT_S, stop=self.stop.finish):
            log.warning("%d old reports still waiting; registering anyway", self.reports.pending())

    def _take_turn(self, max_tasks: int | None) -> bool:
        with self._done_lock:
            if max_tasks is not None and self._done >= max_tasks:
                return False
            self._done += 1
            return True

    def _may_take_more(self, max_tasks: int | None) -> bool:
        with self._done_lock:
            return not self.stop.finish.is_set() and (max_tasks is None or self._done < max_tasks)

    def _slot_loop(self, slot: int, max_tasks: int | None) -> None:
        failures = 0
        handed: Future[dict[str, Any] | None] | None = None
        """The next task, asked for with the last one's completion."""
        try:
            while not self.stop.finish.is_set():
                # Tell the manager how the last task ended before asking for more.
                if (
                    not self.reports.wait_settled(stop=self.stop.finish)
                    or self.stop.finish.is_set()
                ):
                    break
                task = handed.result() if handed is not None and handed.done() else None
                handed = None
                if not self._take_turn(max_tasks):
                    if task is not None:
                        self._release_late_claim(_answered(task))
                    break
                if task is None:
                    task, failures = self._claim_in_turn(slot, failures)
                if task is not None:
                    self.board.set_state("rendering")
                    more = self._may_take_more(max_tasks)
                    handed = self.execute(task, slot=slot, claim_next=more)
        finally:
            if handed is not None:  # a task handed over as this slot stopped goes back
                handed.add_done_callback(self._release_late_claim)

    def _claim_in_turn(self, slot: int, failures: int) -> tuple[dict[str, Any] | None, int]:
        """This turn's task by a long poll, or None (the turn is given back); the failures
        in a row so far."""
        self.board.set_state("idle")
        try:
            task = self._claim_until_stopped(slot)
            failures = 0
        except ManagerRejected as exc:
            task = None
            if exc.code != "runner_not_found":
                # A revoked key or the like: nothing a retry would change.
                self.fatal = exc
                self.stop.request()
            else:
                log.warning("the manager forgot this runner (%s); registering again", exc)
                with self._register_lock:
                    self.register()
        except ManagerUnreachable as exc:
            task = None
            delay = backoff_delay(failures)
            failures += 1
            self.board.set_reports(self.reports.pending(), False)
            log.warning("%s; retrying in %.1f s", exc, delay)
            self.stop.finish.wait(delay)
        if task is None:
            with self._done_lock:
                self._done -= 1
        return task, failures

    def slot_threads(self, slot: int) -> int | None:
        """Render threads for the slot: ``--threads``, else one per CPU of its share."""
        cpus = self.slot_devices[slot].cpus
        return self.threads if self.threads is not None or not cpus else len(cpus)

    def _session_pool(self, slot: int) -> SessionPool | None:
        return self.sessions[slot] if self.sessions else None

    def _claim_until_stopped(self, slot: int = 0) -> dict[str, Any] | None:
        """Long-poll for a task in a helper thread, so that a stop request is not held up."""
        result: Future[dict[str, Any] | None] = Future()
        pool = self._session_pool(slot)
        warm_job_id = pool.warm_job_id if pool is not None else None

        def claim() -> None:
            try:
                result.set_result(self.client.claim(wait=CLAIM_WAIT, warm_job_id=warm_job_id))
            except BaseException as exc:
                result.set_exception(exc)

        answered = threading.Event()
        result.add_done_callback(lambda _: answered.set())
        threading.Thread(target=claim, name="claim", daemon=True).start()
        # Woken by the answer at once (a task is started the moment it arrives), and checks
        # for a stop request in between.
        while not answered.wait(0.1):
            if self.stop.finish.is_set() and not result.done():
                result.add_done_callback(self._release_late_claim)
                return None
        return result.result()

    def _release_late_claim(self, result: Future[dict[str, Any] | None]) -> None:
        try:
            task = result.result()
        except BaseException:
            return
        if task is not None:
            self.reports.put("release", int(task["id"]), reason="the runner is stopping")

    def register(self) -> None:
        attempt = 0
        while True:
            try:
                if self.blenders is not None:
                    self.blenders.refresh_offered()
                reply = self.client.register(self._registration())
                break
            except ManagerUnreachable as exc:
                if self.stop.finish.is_set():
                    raise
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._sleep(delay)
        self.heartbeat_interval = float(reply["heartbeat_interval"])
        self.reports.remember_runner(int(reply["id"]), self.client.base_url)
        log.info(
            "registered as %s (id %s) with %s: Blender %s, devices %s, FFmpeg %s, can %s",
            self.name,
            reply["id"],
            self.client.base_url,
            ", ".join(self.blenders.versions()) if self.blenders else "none",
            ", ".join(d.label for d in self.slot_devices),
            self.ffmpeg or "none",
            ", ".join(self.task_types + self.capabilities),
        )

    def _registration(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": __version__,
            "platform": platform.platform(),
            "blender": self.blenders.default_info() if self.blenders else None,
            "blender_versions": self.blenders.versions() if self.blenders else [],
            "devices": [asdict(d) for d in self.devices],
            "task_types": self.task_types,
            "capabilities": self.capabilities,
            "tags": self.tags,
        }

    @property
    def task_types(self) -> list[str]:
        types = ["blender"] if self.blenders is not None else []
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

    def execute(
        self, task: dict[str, Any], *, slot: int = 0, claim_next: bool = False
    ) -> Future[dict[str, Any] | None] | None:
        """Run the task and queue how it ended. With ``claim_next``, a completion asks for the
        next task as it goes: the answer, when the task completed."""
        task_id = int(task["id"])
        handed: Future[dict[str, Any] | None] | None = None
        job = task["job"]
        log.info("task %s (%s) of job %s: %s", task_id, task["name"], job["id"], job["name"])
        self.board.task_started(slot, task)
        self.workspace.task_started(int(job["id"]))
        task_stop = threading.Event()
        progress = TaskProgress(self.reports, task_id, stop=task_stop)
        ctx = TaskContext(
            self.client,
            self.workspace,
            task,
            progress,
            task_stop,
            backend=None,
            ffmpeg=self.ffmpeg,
            threads=self.slot_threads(slot),
            board=self.board,
            slot=slot,
            device=self.slot_devices[slot],
            blenders=self.blenders,
            sessions=self._session_pool(slot),
        )
        watcher = threading.Thread(
            target=watch_task, args=(self.stop.abort, task_stop, progress), daemon=True
        )
        watcher.start()
        result, reason = "completed", ""
        try:
            for spec in task["commands"]:
                run_command(ctx, spec)
                if self.stop.abort.is_set():
                    raise TaskAborted("the runner is shutting down")
                if progress.stopped:
                    raise TaskStopped(progress.stop_reason or "the manager asked to stop this task")
            progress.flush()  # the last output lines, before the completion
            if claim_next:
                pool = self._session_pool(slot)
                warm_job_id = pool.warm_job_id if pool is not None else None
                handed = self.reports.complete_then_claim(task_id, warm_job_id)
            else:
                self.reports.put("complete", task_id)
            log.info("task %s completed", task_id)
        except (TaskStopped, TaskAborted) as exc:
            result, reason = "released", str(exc)
            log.warning("task %s handed back: %s", task_id, reason)
            self.reports.put("release", task_id, reason=reason)
        except Exception as exc:  # a bug must fail the task, not end this slot's loop
            if progress.stopped or self.stop.abort.is_set():
                result = "released"
                reason = progress.stop_reason or "the runner is shutting down"
                self.reports.put("release", task_id, reason=reason)
            else:
                result, reason = "failed", str(exc)
                if not isinstance(exc, BlenderError | RunnerError):
                    log.exception("unexpected error in task %s", task_id)
                    reason = f"the runner failed: {type(exc).__name__}: {exc}"
                log.error("task %s failed: %s", task_id, reason)
                self.reports.put("fail", task_id, reason=reason)
        finally:
            task_stop.set()  # ends the watcher
            progress.close()
            self.board.task_finished(slot, result, reason)
            self.workspace.remove_task_dirs(int(job["id"]), [task_id])
            self.workspace.task_ended(int(job["id"]))
            pool = self._session_pool(slot)
            if pool is not None:
                pool.task_ended()
            self.workspace.enforce_limit()
        return handed


def _answered(task: dict[str, Any]) -> Future[dict[str, Any] | None]:
    done: Future[dict[str, Any] | None] = Future()
    done.set_result(task)
    return done
