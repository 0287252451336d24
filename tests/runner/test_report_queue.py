"""The on-disk report queue against a manager (an httpx MockTransport) that goes away, comes
back, and refuses some reports; the whole farm does the same in test_resilience.py."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx

from runner.client import ManagerClient
from runner.progress import TaskProgress
from runner.reports import ReportQueue


class FlakyManager:
    def __init__(self) -> None:
        self.up = threading.Event()
        self.received: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.up.is_set():
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        self.received.append((request.method, path))
        if path.endswith("/tasks/9/progress"):
            return httpx.Response(200, json={"keep_running": False, "reason": "job canceled"})
        if path.endswith("/tasks/8/complete"):
            return httpx.Response(409, json={"code": "task_not_active", "message": "gone"})
        if path.endswith("/progress"):
            return httpx.Response(200, json={"keep_running": True})
        return httpx.Response(204 if request.method == "POST" else 201)


def make_queue(folder: Path, manager: FlakyManager) -> ReportQueue:
    client = ManagerClient("http://farm", "ff_k", transport=httpx.MockTransport(manager.handle))
    client.runner_id = 3
    return ReportQueue(folder, client)


def test_reports_wait_on_disk_and_go_out_in_order_once_the_manager_is_back(
    tmp_path: Path,
) -> None:
    manager = FlakyManager()
    frame = tmp_path / "frame_000001.exr"
    frame.write_bytes(b"exr")
    queue = make_queue(tmp_path / "reports", manager)
    queue.start()
    try:
        queue.put("progress", 7, frames_done=0, log=["Blender started"])
        queue.put_upload(7, frame, name=frame.name, frame=1)
        frame.unlink()  # the task folder goes; the queue kept its own link
        queue.put("complete", 7)
        assert not queue.wait_empty(timeout=1.0)  # the manager is down: all wait
        on_disk = sorted((tmp_path / "reports").glob("*.json"))
        assert [json.loads(p.read_text())["kind"] for p in on_disk] == [
            "progress", "upload", "complete"
        ]  # fmt: skip
        assert not queue.reachable
        manager.up.set()
        assert queue.wait_empty(timeout=15.0)
    finally:
        queue.close()
    assert manager.received == [
        ("POST", "/api/runner/3/tasks/7/progress"),
        ("PUT", "/api/runner/3/tasks/7/outputs/frame_000001.exr"),
        ("POST", "/api/runner/3/tasks/7/complete"),
    ]
    assert list((tmp_path / "reports" / "files").iterdir()) == []


def test_refused_reports_are_dropped_and_a_stop_reaches_the_task(tmp_path: Path) -> None:
    manager = FlakyManager()
    manager.up.set()
    queue = make_queue(tmp_path / "reports", manager)
    replies: list[dict[str, Any]] = []
    queue.on_progress_reply(9, lambda _task, reply: replies.append(reply))
    queue.start()
    try:
        queue.put("complete", 8)  # refused: the task went elsewhere
        queue.put("progress", 9, frames_done=1, log=[])
        assert queue.wait_empty(timeout=10.0)
        assert queue.wait_settled()
    finally:
        queue.close()
    assert replies == [{"keep_running": False, "reason": "job canceled"}]


def test_reports_left_by_a_stopped_runner_are_sent_by_the_next(tmp_path: Path) -> None:
    manager = FlakyManager()
    first = make_queue(tmp_path / "reports", manager)
    first.put("fail", 5, reason="Blender exited with code 1")  # never started: nothing sent
    manager.up.set()
    second = make_queue(tmp_path / "reports", manager)
    assert second.pending() == 1
    second.start()
    try:
        assert second.wait_empty(timeout=10.0)
    finally:
        second.close()
    assert manager.received == [("POST", "/api/runner/3/tasks/5/fail")]


def test_a_tasks_last_progress_report_goes_only_with_something_to_tell(tmp_path: Path) -> None:
    queue = make_queue(tmp_path / "reports", FlakyManager())  # (not started: reports stay)
    progress = TaskProgress(queue, 5, stop=threading.Event())
    progress.frame_finished("frame 1 saved")
    progress.flush()  # nothing since the frame's report
    assert queue.pending() == 1
    progress.log_line("Blender quit")
    progress.flush()
    assert queue.pending() == 2
    last = json.loads(sorted((tmp_path / "reports").glob("*.json"))[-1].read_text())
    assert (last["kind"], last["activity"], last["log"]) == ("progress", "done", ["Blender quit"])
    progress.frame_finished("frame 2 saved", report=False)  # a task's last frame
    assert queue.pending() == 2
    progress.flush()  # goes with the last report
    assert queue.pending() == 3
    last = json.loads(sorted((tmp_path / "reports").glob("*.json"))[-1].read_text())
    assert (last["activity"], last["frames_done"], last["log"]) == ("frame 2 saved", 2, [])
    progress.flush()
    assert queue.pending() == 3
