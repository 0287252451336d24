"""The session limits come from --session-* flags or their FRAMEFARM_RUNNER_* variables,
are checked with clear errors, and decide when a session starts afresh."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from framefarm.cli import build_parser
from runner.cli import session_policy
from runner.client import ManagerClient
from runner.devices import DeviceChoice
from runner.loop import Runner
from runner.session import SessionPolicy, SessionRenderer
from runner.session_process import BlenderSession, resident_bytes
from runner.workspace import Workspace
from tests.runner.farm import RunnerFarm, wait_for

VARIABLES = {
    "FRAMEFARM_RUNNER_SESSION_SLOWDOWN": "2.5",
    "FRAMEFARM_RUNNER_SESSION_BASELINE_FRAMES": "5",
    "FRAMEFARM_RUNNER_SESSION_MEMORY_LIMIT": "8G",
    "FRAMEFARM_RUNNER_SESSION_MEMORY_GROWTH": "3",
    "FRAMEFARM_RUNNER_SESSION_IDLE": "30",
}


@pytest.fixture(autouse=True)
def no_session_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def policy(*argv: str) -> SessionPolicy:
    return session_policy(build_parser().parse_args(["runner", *argv]))


def test_the_defaults_are_the_policys_own() -> None:
    assert policy() == SessionPolicy()
    assert SessionPolicy().slowdown == 1.5 and SessionPolicy().memory_growth == 2.0


def test_variables_stand_in_for_flags_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in VARIABLES.items():
        monkeypatch.setenv(name, value)
    assert policy() == SessionPolicy(
        slowdown=2.5,
        baseline_frames=5,
        memory_limit_bytes=8 * 1024**3,
        memory_growth=3.0,
        idle_s=30.0,
    )
    flags = policy(
        "--session-slowdown",
        "1.2",
        "--session-baseline-frames",
        "2",
        "--session-memory-limit",
        "512M",
        "--session-memory-growth",
        "off",
        "--session-idle",
        "0.5",
    )
    assert flags == SessionPolicy(
        slowdown=1.2,
        baseline_frames=2,
        memory_limit_bytes=512 * 1024**2,
        memory_growth=None,
        idle_s=0.5,
    )
    off = policy("--session-slowdown", "OFF", "--session-memory-limit", "off")
    assert (off.slowdown, off.memory_limit_bytes) == (None, None)


BAD = [
    ("session-slowdown", "0", "must be a number above 1, e.g. 1.5, or off"),
    ("session-slowdown", "1", "must be a number above 1"),
    ("session-slowdown", "fast", "must be a number above 1"),
    ("session-slowdown", "nan", "must be a number above 1"),
    ("session-baseline-frames", "0", "must be a whole number of frames, 1 or more ("),
    ("session-baseline-frames", "1.5", "must be a whole number of frames"),
    ("session-baseline-frames", "off", "must be a whole number of frames"),
    ("session-memory-limit", "0", "must be a size above 0, e.g. 8G, or off"),
    ("session-memory-limit", "-1G", "must be a size above 0"),
    ("session-memory-limit", "lots", "must be a size above 0"),
    ("session-memory-growth", "0.5", "must be a number above 1, e.g. 2, or off"),
    ("session-memory-growth", "-2", "must be a number above 1"),
    ("session-idle", "0", "must be a number of seconds above 0, e.g. 120 ("),
    ("session-idle", "-5", "must be a number of seconds above 0"),
    ("session-idle", "off", "must be a number of seconds above 0"),
]


@pytest.mark.parametrize(("flag", "value", "message"), BAD)
def test_a_bad_limit_is_refused_naming_the_flag_and_its_variable(
    flag: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable = "FRAMEFARM_RUNNER_" + flag.upper().replace("-", "_")
    for given in ([f"--{flag}={value}"], []):
        if not given:
            monkeypatch.setenv(variable, value)
        with pytest.raises(SystemExit) as exited:
            policy(*given)
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert f"error: argument --{flag}: {message}" in error, error
        assert f"(got {value!r}; from --{flag} or {variable})" in error


def fake_session(times: list[float], pid: int) -> BlenderSession:
    # Only what the policy reads: the frame times and the process to measure.
    return cast(BlenderSession, _Session(times, pid))


class _Session:
    def __init__(self, times: list[float], pid: int) -> None:
        self.frame_seconds, self.pid = times, pid
        self.first_rss: int | None = None


def reason(policy: SessionPolicy, times: list[float], pid: int | None = None) -> Any:
    renderer = SessionRenderer(cast(Any, None), job_id=1, policy=policy)
    return renderer._restart_reason(fake_session(times, pid or os.getpid()), len(times))


def test_each_limit_restarts_a_session_or_not() -> None:
    slow = [1.0, 1.0, 1.0, 2.0]
    assert reason(SessionPolicy(memory_growth=None), slow).startswith("frame 4 took 2.00 s")
    assert reason(SessionPolicy(slowdown=2.5, memory_growth=None), slow) is None
    assert reason(SessionPolicy(slowdown=None, memory_growth=None), slow) is None
    # Only frames after the baseline count: with 4 baseline frames none has come yet.
    assert reason(SessionPolicy(baseline_frames=4, memory_growth=None), slow) is None

    # Memory, of a real process (this one): a limit under what it holds restarts.
    rss = resident_bytes(os.getpid())
    assert rss is not None
    small = SessionPolicy(slowdown=None, memory_limit_bytes=rss // 2, memory_growth=None)
    assert "passed the limit of" in reason(small, [1.0])
    large = SessionPolicy(slowdown=None, memory_limit_bytes=rss * 4, memory_growth=None)
    assert reason(large, [1.0]) is None


def test_growth_is_measured_from_the_first_frame() -> None:
    session = _Session([1.0], os.getpid())
    renderer = SessionRenderer(cast(Any, None), job_id=1, policy=SessionPolicy(memory_growth=4.0))
    assert renderer._restart_reason(cast(BlenderSession, session), 1) is None
    assert session.first_rss is not None  # what it held after its first frame
    session.first_rss //= 8  # as if it had held an eighth of today's memory then
    found = renderer._restart_reason(cast(BlenderSession, session), 2)
    assert found is not None and "passed its growth limit" in found
    growth_off = SessionRenderer(
        cast(Any, None), job_id=1, policy=SessionPolicy(memory_growth=None)
    )
    assert growth_off._restart_reason(cast(BlenderSession, session), 2) is None


def test_the_runner_hands_its_policy_to_every_slot(tmp_path: Path) -> None:
    chosen = SessionPolicy(slowdown=3.0, idle_s=7.0)
    client = ManagerClient("http://127.0.0.1:9", "key")
    try:
        runner = Runner(
            client,
            None,
            Workspace(tmp_path / "work"),
            name="node-1",
            slot_devices=[DeviceChoice(), DeviceChoice()],
            session_policy=chosen,
        )
        assert [pool.policy for pool in runner.sessions] == [chosen, chosen]
    finally:
        client.close()


@pytest.mark.e2e
@pytest.mark.blender
def test_a_runner_restarts_its_sessions_at_the_limits_it_is_given(
    farm: RunnerFarm, scene_bpy: Path
) -> None:
    farm.env["FRAMEFARM_RUNNER_SESSION_MEMORY_LIMIT"] = "64M"  # bpy holds far more
    farm.start_runner("node-1", "--blender", sys.executable, "--no-tui", "--session-slowdown=off")
    job = farm.submit(scene_bpy, "1-2", chunk_size=2)

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = farm.get(f"/api/jobs/{job['id']}")
        return status if status["status"] in ("completed", "failed", "canceled") else None

    assert wait_for(finished, 180, "the job to finish", farm)["status"] == "completed"
    log = (farm.root / "runner-node-1.log").read_text()
    # One task of two frames: each frame ends its Blender, as the variable asked.
    restarts = re.findall(r"restarts: resident memory \d+ MiB passed the limit of 64 MiB", log)
    assert len(restarts) == 2, log
    assert len(re.findall(rf"Blender session \d+ of job {job['id']} started", log)) == 2, log
