"""Reports to the manager, kept on disk until delivered and sent in order by one thread.

Progress, frame uploads, complete, fail and release all go through here, so a manager that
is down or restarting loses none of them: each is a JSON file (``<seq>.json``, written to a
temp name, fsynced and renamed), an upload a hard link to the frame beside it. The sender
retries the oldest report with backoff and jitter until the manager answers, then the next;
an upload that arrives twice replaces the same output by name, so nothing is duplicated.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from runner.client import ManagerClient
from runner.errors import ManagerRejected, ManagerUnreachable

log = logging.getLogger("framefarm.runner")
MAX_BACKOFF_S = 5.0
TASK_ENDINGS = ("complete", "fail", "release")
ProgressReply = Callable[[int, dict[str, Any]], None]


class ReportQueue:
    def __init__(
        self,
        folder: Path,
        client: ManagerClient,
        *,
        on_state: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.folder = folder
        self.files = folder / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.client = client
        self.on_state = on_state
        self.reachable = True
        self._replies: dict[int, ProgressReply] = {}
        self._claims: dict[int, tuple[Future[dict[str, Any] | None], int | None]] = {}
        """Completions that ask for the next task as they go: the answer, the warm job."""
        self._cond = threading.Condition()
        self._closed = False
        self._seq = max((int(p.stem) for p in self._items()), default=0)
        self._endings = sum(1 for p in self._items() if _kind(p) in TASK_ENDINGS)
        self._thread: threading.Thread | None = None

    def _items(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*.json") if p.stem.isdigit())

    def pending(self) -> int:
        return len(self._items())

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._deliver_forever, name="reports", daemon=True
            )
            self._thread.start()

    def remember_runner(self, runner_id: int, manager: str) -> None:
        """Note who the reports are from, so that a restarted runner can send leftovers."""
        record = self.folder / "runner"
        record.write_text(json.dumps({"runner_id": runner_id, "manager": manager}))

    def previous_runner(self, manager: str) -> int | None:
        try:
            record = json.loads((self.folder / "runner").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return int(record["runner_id"]) if record.get("manager") == manager else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def on_progress_reply(self, task_id: int, callback: ProgressReply | None) -> None:
        with self._cond:
            if callback is None:
                self._replies.pop(task_id, None)
            else:
                self._replies[task_id] = callback

    # -- adding ---------------------------------------------------------------------------

    def put(self, kind: str, task_id: int, **fields: Any) -> None:
        with self._cond:
            self._seq += 1
            self._write(self._seq, {"kind": kind, "task_id": task_id, **fields})
            self._endings += kind in TASK_ENDINGS
            self._cond.notify_all()
        self._tell_state()

    def complete_then_claim(
        self, task_id: int, warm_job_id: int | None
    ) -> Future[dict[str, Any] | None]:
        """Queue the task's completion, to be sent with a claim for the next task.

        The answer is the task the manager handed over with it, or None: nothing was
        runnable, or the first try did not get through. A try again only completes: the
        first may have claimed a task whose answer was lost, and a claim on every try
        could pile up more (such a task stays with this runner until the farm's
        ``task-timeout`` hands it on, or the runner starts again, as with a long poll whose
        answer is lost). A completion left from an earlier run goes alone.
        """
        claimed: Future[dict[str, Any] | None] = Future()
        with self._cond:
            self._claims[task_id] = (claimed, warm_job_id)
        self.put("complete", task_id)
        return claimed

    def put_upload(self, task_id: int, path: Path, *, name: str, frame: int | None) -> None:
        """Queue an output file; a hard link (or copy) keeps it after the task folder goes."""
        with self._cond:
            self._seq += 1
            kept = self.files / f"{self._seq:012d}-{Path(name).name}"
            try:
                os.link(path, kept)
            except OSError:
                shutil.copy2(path, kept)
            self._write(
                self._seq,
                {
                    "kind": "upload",
                    "task_id": task_id,
                    "file": kept.name,
                    "name": name,
                    "frame": frame,
                },
            )
            self._cond.notify_all()
        self._tell_state()

    def _write(self, seq: int, item: dict[str, Any]) -> None:
        target = self.folder / f"{seq:012d}.json"
        temp = target.with_suffix(".tmp")
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(item, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)

    # -- delivering -----------------------------------------------------------------------

    def wait_empty(self, timeout: float | None = None, stop: threading.Event | None = None) -> bool:
        """Wait until every report was delivered; False on timeout or when ``stop`` is set."""
        waited = 0.0
        while self.pending():
            if (timeout is not None and waited >= timeout) or (stop is not None and stop.is_set()):
                return False
            with self._cond:
                self._cond.wait(0.1)
            waited += 0.1
        return True

    def wait_settled(self, stop: threading.Event | None = None) -> bool:
        """Wait until no task ending (complete, fail, release) waits; False when stopped."""
        with self._cond:
            while self._endings:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
        return True

    def _deliver_forever(self) -> None:
        backoff = 0.5
        while True:
            with self._cond:
                items = self._items()
                while not items and not self._closed:
                    self._cond.wait(1.0)
                    items = self._items()
                if self._closed:
                    return
            path = items[0]
            kind = ""
            try:
                item = json.loads(path.read_text(encoding="utf-8"))
                kind = str(item.get("kind"))
                self._deliver(item)
            except ManagerUnreachable as exc:
                if self.reachable:
                    log.warning("manager unreachable, reports wait on disk: %s", exc)
                self.reachable = False
                self._tell_state()
                with self._cond:
                    self._cond.wait(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            except (ValueError, OSError) as exc:
                log.error("dropping unreadable report %s: %s", path.name, exc)
            if not self.reachable:
                log.info("manager reachable again; sending %d waiting reports", len(items))
            self.reachable, backoff = True, 0.5
            path.unlink(missing_ok=True)
            with self._cond:
                self._endings -= kind in TASK_ENDINGS
                self._cond.notify_all()
            self._tell_state()

    def _deliver(self, item: dict[str, Any]) -> None:
        kind, task_id = item["kind"], int(item["task_id"])
        try:
            if kind == "progress":
                reply = self.client.progress(
                    task_id,
                    frames_done=item.get("frames_done"),
                    activity=item.get("activity"),
                    log=item.get("log") or [],
                )
                self._reply(task_id, reply)
            elif kind == "upload":
                kept = self.files / item["file"]
                self.client.upload_output(task_id, kept, name=item["name"], frame=item["frame"])
                kept.unlink(missing_ok=True)
            elif kind == "complete":
                with self._cond:
                    then = self._claims.pop(task_id, None)
                if then is None:
                    self.client.complete(task_id)
                else:
                    claimed, warm_job_id = then
                    try:
                        claimed.set_result(self.client.claim(0, warm_job_id, completed=task_id))
                    finally:
                        if not claimed.done():
                            claimed.set_result(None)
            elif kind == "fail":
                self.client.fail(task_id, item["reason"])
            elif kind == "release":
                self.client.release(task_id, item["reason"])
        except ManagerRejected as exc:
            # The manager will never take this report (the task went elsewhere, was
            # canceled, or already has it from a try whose answer was lost): drop it.
            log.warning("manager refused %s for task %s: %s", kind, task_id, exc.message)
            if kind == "upload":
                (self.files / item["file"]).unlink(missing_ok=True)
            if kind == "progress":
                self._reply(task_id, {"keep_running": False, "reason": exc.message})

    def _reply(self, task_id: int, reply: dict[str, Any]) -> None:
        with self._cond:
            callback = self._replies.get(task_id)
        if callback is not None:
            callback(task_id, reply)

    def _tell_state(self) -> None:
        if self.on_state is not None:
            self.on_state(self.pending(), self.reachable)


def _kind(path: Path) -> str:
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("kind"))
    except (ValueError, OSError):
        return ""
