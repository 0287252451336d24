"""The console drawn from a board on a capture console, and plain logs off a terminal."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
from rich.console import Console

from framefarm.cli import main
from runner.board import RunnerBoard
from runner.console import draw_board, format_seconds, setup_logging, task_eta, wants_live_console


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def screen_text(board: RunnerBoard, now: float, width: int = 110) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(draw_board(board.snapshot(), now))
    return console.export_text()


def busy_board(clock: Clock) -> RunnerBoard:
    board = RunnerBoard(name="node-7", manager="http://farm:8080", clock=clock)
    board.describe(
        name="node-7", manager="http://farm:8080", devices=["CPU"], blender="bpy 5.0.1 (/py)"
    )
    board.set_state("rendering")
    board.task_started(0, {"id": 12, "name": "render-1-3", "frames": [1, 2, 3],
                           "job": {"id": 4, "name": "shot-010"}})  # fmt: skip
    board.render_event(0, "ready", {"device": "CPU", "device_label": "CPU"})
    board.render_event(0, "frame_started", {"frame": 1})
    clock.now += 4
    board.render_event(0, "frame_finished", {"frame": 1, "seconds": 4.0})
    board.render_event(0, "frame_started", {"frame": 2})
    clock.now += 1
    board.render_event(0, "samples", {"frame": 2, "sample": 16, "samples": 64})
    return board


def test_the_screen_shows_header_task_frames_eta_log_and_finished_tasks() -> None:
    clock = Clock()
    board = busy_board(clock)
    board.add_log(logging.INFO, "task 11 completed")
    board.add_log(logging.ERROR, "task 10 failed: Blender exited with code 1")
    board.task_started(1, {"id": 10, "name": "render-9", "frames": [9], "job": {"id": 3,
                           "name": "shot-005"}})  # fmt: skip
    clock.now += 1
    board.task_finished(1, "failed", "Blender exited with code 1")
    text = screen_text(board, clock.now)

    assert "framefarm runner node-7" in text
    assert "manager http://farm:8080" in text
    assert "state: rendering" in text
    assert "devices: CPU" in text
    assert "errors: 1" in text
    # 1 frame done in 4 s, frame 2 two seconds in, frame 3 waiting: 2 s + 4 s left.
    assert "task 12 render-1-3 · job 4 shot-010 · frames 1/3 · elapsed 0:06 · ETA 0:06" in text
    assert "frame 1" in text and "done in 0:04" in text
    assert "sample 16/64 · 0:02" in text
    lines = text.splitlines()
    frame3 = next(line for line in lines if "frame 3" in line)
    assert "waiting" in frame3
    assert "device: CPU" in text
    assert "task 10 failed: Blender exited with code 1" in text
    finished = next(line for line in lines if "10 render-9" in line)
    assert "shot-005" in finished and "0:01" in finished
    assert "failed: Blender exited with code 1" in finished


def test_an_idle_runner_with_reports_waiting_says_the_manager_is_unreachable() -> None:
    clock = Clock()
    board = RunnerBoard(name="node-7", manager="http://farm:8080", clock=clock)
    board.set_state("idle")
    board.set_reports(5, False)
    text = screen_text(board, clock.now)
    assert "manager unreachable: 5 reports waiting on disk" in text
    assert "no task: waiting for work" in text


def test_eta_from_samples_before_any_frame_finished() -> None:
    clock = Clock()
    board = RunnerBoard(clock=clock)
    board.task_started(0, {"id": 1, "name": "r", "frames": [1, 2], "job": {"id": 1}})
    board.render_event(0, "frame_started", {"frame": 1})
    clock.now += 2
    board.render_event(0, "samples", {"frame": 1, "sample": 25, "samples": 100})
    view = board.snapshot().tasks[0]
    # A quarter of the samples in 2 s: 8 s a frame, 6 s left of this one and 8 s of the next.
    assert task_eta(view, clock.now) == 14.0
    assert format_seconds(14.0) == "0:14"
    assert format_seconds(3725) == "1:02:05"
    assert format_seconds(None) == "—"


def test_the_live_screen_is_only_for_terminals() -> None:
    assert not wants_live_console(False, io.StringIO())
    assert not wants_live_console(True, sys.stdout)


def test_plain_logs_go_to_the_log_file_and_the_board(tmp_path: Path, restore_logging: None) -> None:
    board = RunnerBoard()
    log_file = tmp_path / "logs" / "runner.log"
    setup_logging(board, live=True, log_file=log_file)
    logging.getLogger("framefarm.runner").warning("manager unreachable")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert [line.message for line in board.snapshot().log] == ["manager unreachable"]
    assert log_file.read_text().rstrip().endswith("WARNING manager unreachable")


def test_runner_off_a_terminal_prints_plain_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    # No Rich screen codes when stdout is not a terminal (as under pytest); the error is a
    # plain line on stderr and in the log file.
    code = main(
        ["runner", "--manager", "http://127.0.0.1:9", "--api-key", "ff_x",
         "--blender", "/nonexistent/blender", "--log-file", str(tmp_path / "r.log")]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert "\x1b[" not in out + err
    assert "error: /nonexistent/blender was not found" in err
    assert "ERROR   /nonexistent/blender was not found" in (tmp_path / "r.log").read_text()
