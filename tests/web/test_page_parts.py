"""The parts behind the pages: ETA, frame times, time and size words, a .blend's settings."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import manager.web
from manager.web.blendinfo import read_blend_info
from manager.web.eta import estimate_eta, frame_times, job_eta
from manager.web.job_view import TaskLine, tasks_worth_showing
from manager.web.templating import age, ago, duration, filesize

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_frame_times_count_from_the_task_start_then_between_outputs():
    times = frame_times(
        {1: at(0), 2: at(1)},
        [(1, 1, at(4)), (1, 2, at(6)), (2, 3, at(4)), (None, 9, at(5))],
    )
    assert [(t.frame, t.seconds) for t in times] == [(1, 4.0), (3, 3.0), (2, 2.0)]


def test_eta_is_mean_recent_frame_time_times_frames_left_over_runners():
    assert estimate_eta([2.0, 4.0], frames_left=10, runners_working=2) == 15.0
    assert estimate_eta([2.0], frames_left=0, runners_working=0) == 0.0
    assert estimate_eta([], frames_left=5, runners_working=1) is None  # nothing measured yet
    assert estimate_eta([3.0], frames_left=5, runners_working=0) is None  # nobody on it
    # only the ten most recent frames count: an early slow frame is forgotten
    slow_then_fast = frame_times({1: at(0)}, [(1, n, at(100 + n)) for n in range(1, 12)])
    assert slow_then_fast[0].seconds == 101.0
    assert job_eta(slow_then_fast, frames_left=4, runners_working=1) == 4.0


def test_time_and_size_words():
    assert ago(at(0), now=at(42)) == "42 s ago"
    assert ago(at(0), now=at(3 * 3600 + 5)) == "3 h ago"
    assert ago(None) == "never"
    assert age(at(0), now=at(42)) == "just now"
    assert age(at(0), now=at(125)) == "2 min ago"
    assert duration(0.42) == "0.4 s"
    assert duration(185) == "3 min 05 s"
    assert duration(7620) == "2 h 07 min"
    assert duration(None) == "—"
    assert filesize(512) == "512 B" and filesize(12_700) == "12.4 KB"


@pytest.mark.blender
def test_blend_settings_read_without_blender(scene_bpy: Path, tmp_path: Path):
    info = read_blend_info(scene_bpy)
    assert info is not None
    assert (info.frame_start, info.frame_end, info.frames) == (1, 4, "1-4")
    assert (info.width, info.height, info.resolution) == (64, 64, "64 × 64")
    assert info.engine == "Cycles" and info.output_format == "OpenEXR"
    assert info.fps == 24.0 and info.scene == "Scene"
    not_blend = tmp_path / "notes.blend"
    not_blend.write_bytes(b"this is not a blend file")
    assert read_blend_info(not_blend) is None


# sha256 of dist/htmx.min.js in the npm package htmx.org 2.0.11 (`npm pack htmx.org@2.0.11`)
HTMX_2_0_11_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def test_the_vendored_htmx_is_the_published_one_with_its_licence():
    static = Path(manager.web.__file__).parent / "static"
    assert hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest() == HTMX_2_0_11_SHA256
    assert "Zero-Clause BSD" in (static / "htmx.LICENSE").read_text()


def test_a_big_jobs_task_table_shows_running_and_failing_tasks_first():
    statuses = ["completed"] * 80 + ["active", "failed"] + ["queued"] * 18
    tasks = [
        TaskLine(n, f"render-{n}", status, n, [n], 0, None, 0, "", None, None, None)
        for n, status in enumerate(statuses)
    ]
    shown = tasks_worth_showing(tasks, limit=5)
    assert [(t.task_order, t.status) for t in shown] == [
        (0, "completed"),
        (1, "completed"),
        (2, "completed"),
        (80, "active"),
        (81, "failed"),
    ]
    assert tasks_worth_showing(tasks[:5], limit=5) == tasks[:5]
