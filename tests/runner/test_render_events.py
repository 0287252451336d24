"""render.py's event lines, render results, and run_render's process handling.

run_render is driven here by a small Python program that prints like render.py does;
tests/runner/test_render_backends.py drives it with real Blender.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from runner.blender import (
    RenderEvent,
    RenderFailed,
    RenderResult,
    check_render,
    parse_event_line,
    run_render,
)


def test_parse_event_line() -> None:
    event = parse_event_line('@framefarm {"event":"saved","frame":3,"path":"/o/f.exr"}\n')
    assert event == RenderEvent("saved", {"event": "saved", "frame": 3, "path": "/o/f.exr"})
    assert event.frame == 3
    ready = parse_event_line('@framefarm {"event":"ready","frames":[1,2]}')
    assert ready is not None
    assert ready.name == "ready"
    assert ready.frame is None


def test_parse_event_line_after_blender_status_text() -> None:
    # Blender 3.4 ends its "Fra:" status line only after the stats handlers ran.
    line = 'Fra:2 Mem:9.08M | Scene, ViewLayer | Sample 1/4@framefarm {"event":"done"}'
    assert parse_event_line(line) == RenderEvent("done", {"event": "done"})


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Fra:1 Mem:9.08M (Peak 9.08M) | Time:00:00.02 | Sample 1/4",
        "Saved: '/out/frame_000001.exr'",
        '{"event":"saved","frame":1}',  # no prefix
        '@framefarm{"event":"saved"}',  # no space after the word
        "@framefarm ",
        '@framefarm {"event":"saved",',  # cut short
        "@framefarm not json",
        '@framefarm ["event","saved"]',
        '@framefarm {"frame":1}',  # no event name
        '@framefarm {"event":7}',
    ],
)
def test_parse_event_line_ignores_other_lines(line: str) -> None:
    assert parse_event_line(line) is None


def test_event_frame_must_be_an_integer() -> None:
    assert RenderEvent("saved", {"frame": "3"}).frame is None
    assert RenderEvent("saved", {"frame": True}).frame is None


def test_check_render_passes_a_complete_render() -> None:
    result = RenderResult(0, {1: Path("/o/1.exr"), 2: Path("/o/2.exr")}, [], ["x"], 1.0)
    check_render(result, [1, 2])


def test_check_render_names_exit_code_missing_frames_and_output() -> None:
    result = RenderResult(1, {1: Path("/o/1.exr")}, [], ["Fra:3 …", "Error: out of memory"], 2.0)
    with pytest.raises(RenderFailed) as failed:
        check_render(result, [1, 3, 4])
    assert str(failed.value) == (
        "Blender exited with code 1; frames never saved: 3, 4; last output:\n"
        "Fra:3 …\nError: out of memory"
    )


def test_check_render_includes_error_events() -> None:
    result = RenderResult(2, {}, ["no scene named 'X' in the file (scenes: Scene)"], [], 0.5)
    with pytest.raises(RenderFailed) as failed:
        check_render(result, [1])
    assert str(failed.value) == (
        "Blender exited with code 2; error: no scene named 'X' in the file (scenes: Scene); "
        "frames never saved: 1; last output:\n(none)"
    )


def test_check_render_fails_on_an_error_even_with_exit_zero() -> None:
    result = RenderResult(0, {1: Path("/o/1.exr")}, ["render canceled"], [], 0.5)
    with pytest.raises(RenderFailed, match="^error: render canceled; last output"):
        check_render(result, [1])


def test_check_render_names_the_signal_and_the_stop() -> None:
    result = RenderResult(-signal.SIGTERM, {}, [], [], 0.5, stopped=True)
    with pytest.raises(RenderFailed, match="^render stopped before it finished; Blender was kil"):
        check_render(result, [1])
    with pytest.raises(RenderFailed, match="killed by SIGTERM; frames never saved: 1;"):
        check_render(result, [1])


def _program(tmp_path: Path, source: str) -> list[str]:
    script = tmp_path / "fake_blender.py"
    script.write_text(textwrap.dedent(source))
    return [sys.executable, str(script)]


def test_run_render_reports_events_and_lines_in_order(tmp_path: Path) -> None:
    argv = _program(
        tmp_path,
        """
        import sys
        print('Blender 9.9 (fake)')
        print('@framefarm {"event":"ready","frames":[1]}', flush=True)
        print('a warning', file=sys.stderr, flush=True)
        print('@framefarm {"event":"saved","frame":1,"path":"/o/frame_000001.exr"}')
        print('@framefarm {"event":"done","frames":[1]}')
        print('')
        for n in range(40):
            print(f'line {n}')
        """,
    )
    seen: list[str] = []
    result = run_render(
        argv,
        env=dict(os.environ),
        on_event=lambda event: seen.append("event " + event.name),
        on_output_line=lambda line: seen.append("line " + line),
    )
    assert seen[:5] == [
        "line Blender 9.9 (fake)",
        "event ready",
        "line a warning",
        "event saved",
        "event done",
    ]
    assert seen[5:7] == ["line ", "line line 0"]
    assert result.returncode == 0
    assert result.saved == {1: Path("/o/frame_000001.exr")}
    assert result.errors == []
    assert result.last_lines == [f"line {n}" for n in range(10, 40)]  # blank lines dropped
    assert not result.stopped
    check_render(result, [1])


def test_run_render_collects_error_events(tmp_path: Path) -> None:
    argv = _program(
        tmp_path,
        """
        import sys
        print('@framefarm {"event":"error","message":"no scene named \\'X\\'"}')
        sys.exit(2)
        """,
    )
    result = run_render(argv, env=dict(os.environ))
    assert result.returncode == 2
    assert result.errors == ["no scene named 'X'"]


def test_run_render_runs_blender_in_its_own_process_group(tmp_path: Path) -> None:
    argv = _program(tmp_path, "import os\nprint('group', os.getpgid(0), os.getsid(0))\n")
    lines: list[str] = []
    run_render(argv, env=dict(os.environ), on_output_line=lines.append)
    _, group, session = lines[0].split()
    assert int(group) != os.getpgid(0)
    assert int(session) != os.getsid(0)


def test_stop_terminates_the_render(tmp_path: Path) -> None:
    argv = _program(
        tmp_path,
        """
        import time
        print('@framefarm {"event":"ready","frames":[1]}', flush=True)
        time.sleep(60)
        """,
    )
    stop = threading.Event()
    started = time.monotonic()
    result = run_render(argv, env=dict(os.environ), on_event=lambda _: stop.set(), stop=stop)
    assert time.monotonic() - started < 5
    assert result.stopped
    assert result.returncode == -signal.SIGTERM


def test_stop_kills_a_render_that_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("runner.blender.TERMINATE_GRACE_S", 0.5)
    argv = _program(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('@framefarm {"event":"ready","frames":[1]}', flush=True)
        time.sleep(60)
        """,
    )
    stop = threading.Event()
    result = run_render(argv, env=dict(os.environ), on_event=lambda _: stop.set(), stop=stop)
    assert result.returncode == -signal.SIGKILL
    assert result.seconds < 5


def test_a_failing_callback_does_not_leave_the_process_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    argv = _program(
        tmp_path,
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        print('@framefarm {{"event":"ready","frames":[1]}}', flush=True)
        time.sleep(60)
        """,
    )

    def upload_fails(event: RenderEvent) -> None:
        raise ConnectionError("manager unreachable")

    with pytest.raises(ConnectionError):
        run_render(argv, env=dict(os.environ), on_event=upload_fails)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
