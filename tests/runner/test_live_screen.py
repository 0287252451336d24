"""The live console on a real terminal: a runner inside tmux renders a real job while the
test reads the screen with ``tmux capture-pane``."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner.farm import RunnerFarm, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


class Tmux:
    """A private tmux server (its own socket), so nothing of the user's is touched."""

    def __init__(self, env: dict[str, str]) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed: apt install tmux (make test does)")
        self.socket = f"framefarm-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", "runner", "-x", "110", "-y", "45", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "runner")

    def kill(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True
        )


@pytest.fixture
def tmux(farm: RunnerFarm) -> Iterator[Tmux]:
    session = Tmux({**farm.env, "TERM": "xterm-256color"})
    try:
        yield session
    finally:
        session.kill()


def test_live_screen_shows_the_render_progress(
    farm: RunnerFarm, tmux: Tmux, slow_scene: Path, slow_samples: int, tmp_path: Path
) -> None:
    log_file = tmp_path / "runner-plain.log"
    argv = farm.runner_argv(
        "node-tui", "--blender", sys.executable, "--max-tasks", "1", "--log-file", str(log_file)
    )
    # Keep the pane open after the runner exits, so a crash leaves its message readable.
    tmux.start(f"{shlex.join(argv)}; echo runner-exited-$?; sleep 60")
    job = farm.submit(slow_scene, "1-4", chunk_size=4, name="shot-010")

    frame_line = re.compile(rf"frame \d\s.*sample \d+/{slow_samples}")
    screens: list[str] = []

    def progress_on_screen() -> bool:
        screens.append(tmux.screen())
        return bool(frame_line.search(screens[-1]))

    wait_for(progress_on_screen, 90, "a frame's sample progress on the live screen", farm)
    screen = screens[-1]
    assert "framefarm runner node-tui" in screen
    assert f"manager {farm.url}" in screen
    assert "state: rendering" in screen
    assert "devices: CPU" in screen
    assert re.search(rf"task \d+ render-1-4 · job {job['id']} shot-010 · frames \d/4", screen)
    assert "elapsed" in screen and "ETA" in screen
    assert "finished tasks" in screen

    wait_for(lambda: "runner-exited-0" in tmux.screen(), 90, "the runner to finish", farm)
    status = farm.get(f"/api/jobs/{job['id']}")
    assert status["status"] == "completed", farm.logs()
    # The log file has plain lines, without the screen's colours and boxes.
    text = log_file.read_text()
    assert "task 1 completed" in text
    assert "\x1b[" not in text and "│" not in text
