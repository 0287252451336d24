"""The runner's live console: a Rich screen drawn from a board snapshot, or plain log lines.

``draw_board(snapshot, now)`` is a pure function of plain data, so tests compare its text on
a capture console; ``LiveConsole`` redraws it a few times a second on a real terminal.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from runner.board import BoardLogHandler, BoardSnapshot, FrameView, RunnerBoard, TaskView

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
REFRESHES_PER_SECOND = 4


def format_seconds(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def task_eta(view: TaskView, now: float) -> float | None:
    """Seconds left: finished frames' mean time for each frame still to come."""
    done = [f.seconds for f in view.frames.values() if f.state == "done" and f.seconds]
    current = [f for f in view.frames.values() if f.state == "rendering" and f.started_at]
    waiting = sum(1 for f in view.frames.values() if f.state == "waiting")
    if done:
        per_frame = sum(done) / len(done)
    elif current and current[0].samples and current[0].sample:
        started = current[0].started_at or now
        per_frame = (now - started) * current[0].samples / current[0].sample
    else:
        return None
    left = waiting * per_frame
    for frame in current:
        left += max(0.0, per_frame - (now - (frame.started_at or now)))
    return left


def _frame_row(frame: FrameView, now: float) -> tuple[RenderableType, ...]:
    if frame.state == "done":
        total, completed, detail = 1.0, 1.0, f"done in {format_seconds(frame.seconds)}"
    elif frame.samples:
        total, completed = float(frame.samples), float(frame.sample)
        detail = f"sample {frame.sample}/{frame.samples}"
    else:
        total, completed, detail = 1.0, 0.0, frame.state
    if frame.state == "rendering" and frame.started_at is not None:
        detail += f" · {format_seconds(now - frame.started_at)}"
    bar = ProgressBar(total=total, completed=completed, width=30)
    return Text(f"frame {frame.frame}"), bar, Text(detail)


def _task_panel(slot: int, view: TaskView, now: float) -> Panel:
    done = sum(1 for f in view.frames.values() if f.state == "done")
    title = (
        f"task {view.task_id} {view.task_name} · job {view.job_id} {view.job_name} · "
        f"frames {done}/{len(view.frames)} · elapsed {format_seconds(now - view.started_at)} · "
        f"ETA {format_seconds(task_eta(view, now))}"
    )
    table = Table.grid(padding=(0, 1))
    for frame in sorted(view.frames.values(), key=lambda f: f.frame):
        table.add_row(*_frame_row(frame, now))
    lines: list[RenderableType] = [table]
    if view.activity:
        lines.append(Text(view.activity, style="dim"))
    if view.device:
        lines.append(Text(f"device: {view.device}", style="dim"))
    return Panel(Group(*lines), title=f"slot {slot}: {title}", title_align="left")


def draw_board(snapshot: BoardSnapshot, now: float) -> RenderableType:
    header = Table.grid(padding=(0, 2))
    state_style = "bold green" if snapshot.state in ("rendering", "idle") else "bold yellow"
    header.add_row(
        Text(f"framefarm runner {snapshot.name}", style="bold"),
        Text(f"manager {snapshot.manager}"),
        Text(f"state: {snapshot.state}", style=state_style),
    )
    header.add_row(
        Text(f"Blender {snapshot.blender or 'none'}"),
        Text(f"devices: {', '.join(snapshot.devices) or 'unknown'}"),
        Text(f"errors: {snapshot.errors}", style="bold red" if snapshot.errors else ""),
    )
    parts: list[RenderableType] = [header]
    if not snapshot.manager_reachable or snapshot.reports_waiting:
        reach = "manager unreachable" if not snapshot.manager_reachable else "sending"
        parts.append(
            Text(f"{reach}: {snapshot.reports_waiting} reports waiting on disk", style="bold red")
        )
    if snapshot.tasks:
        parts += [_task_panel(slot, view, now) for slot, view in sorted(snapshot.tasks.items())]
    else:
        parts.append(Panel(Text("no task: waiting for work", style="dim"), title="current task"))
    log = Text("\n").join(
        Text(
            f"{time.strftime('%H:%M:%S', time.localtime(line.at))} {line.message}",
            style=_log_style(line.level),
        )
        for line in snapshot.log
    )
    parts.append(Panel(log or Text("—", style="dim"), title="log", title_align="left"))
    finished = Table(title="finished tasks", title_justify="left", expand=False)
    for column in ("task", "job", "duration", "result"):
        finished.add_column(column)
    for task in snapshot.finished:
        style = "green" if task.result == "completed" else "bold red"
        result = task.result + (f": {task.reason[:60]}" if task.reason else "")
        finished.add_row(
            f"{task.task_id} {task.task_name}",
            task.job_name,
            format_seconds(task.seconds),
            Text(result, style=style),
        )
    parts.append(finished)
    return Group(*parts)


def _log_style(level: int) -> str:
    if level >= logging.ERROR:
        return "bold red"
    return "yellow" if level >= logging.WARNING else ""


class LiveConsole:
    """Redraws the board on ``console`` until stopped (a context manager)."""

    def __init__(
        self, board: RunnerBoard, console: Console, *, get_time: Callable[[], float] = time.time
    ) -> None:
        self.board = board
        self.get_time = get_time
        self.live = Live(
            get_renderable=lambda: draw_board(board.snapshot(), get_time()),
            console=console,
            refresh_per_second=REFRESHES_PER_SECOND,
            screen=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveConsole:
        self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.live.stop()


def wants_live_console(no_tui: bool, stream: IO[str] | None = None) -> bool:
    """The live screen only on a terminal, and not with --no-tui."""
    stream = stream or sys.stdout
    return not no_tui and stream.isatty()


def setup_logging(board: RunnerBoard, *, live: bool, log_file: Path | None) -> None:
    """Log records go to the board; to stderr as plain lines unless the live screen is on;
    and always to ``log_file`` as plain lines."""
    handlers: list[logging.Handler] = [BoardLogHandler(board)]
    if not live:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    formatter = logging.Formatter(PLAIN_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
