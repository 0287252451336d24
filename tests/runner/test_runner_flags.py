"""Every runner flag has its FRAMEFARM_* variable; flags win over variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from framefarm.cli import build_parser, main
from runner.cli import blender_paths, cpus_for_slots


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["runner", *argv])


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FRAMEFARM_MANAGER", "FRAMEFARM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    args = parse()
    assert args.name == socket.gethostname()
    assert (args.slots, args.cache_size, args.gpu, args.blender) == (1, None, None, None)
    assert not args.no_tui and not args.force_cpu_rendering
    assert args.workdir == Path("framefarm-runner")


def test_variables_stand_in_for_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {
        "FRAMEFARM_MANAGER": "http://farm:8080",
        "FRAMEFARM_API_KEY": "ff_secret",
        "FRAMEFARM_RUNNER_NAME": "node-9",
        "FRAMEFARM_RUNNER_TAGS": "gpu,lookdev",
        "FRAMEFARM_RUNNER_LOG_FILE": "/var/log/runner.log",
        "FRAMEFARM_RUNNER_FORCE_CPU_RENDERING": "yes",
        "FRAMEFARM_RUNNER_GPU": "OPTIX:0",
        "FRAMEFARM_RUNNER_CACHE_DIR": "/cache",
        "FRAMEFARM_RUNNER_CACHE_SIZE": "20G",
        "FRAMEFARM_RUNNER_SLOTS": "2",
        "FRAMEFARM_RUNNER_NO_TUI": "1",
        "FRAMEFARM_RUNNER_BLENDER": "/opt/blender-4.2/blender:/usr/bin/blender",
        "FRAMEFARM_RUNNER_THREADS": "8",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    args = parse()
    assert (args.manager, args.api_key, args.name) == ("http://farm:8080", "ff_secret", "node-9")
    assert args.tags == "gpu,lookdev"
    assert args.log_file == Path("/var/log/runner.log")
    assert args.force_cpu_rendering and args.no_tui
    assert args.gpu == "OPTIX:0"
    assert (args.cache_dir, args.cache_size) == (Path("/cache"), 20 * 1024**3)
    assert (args.slots, args.threads) == (2, 8)
    assert blender_paths(args.blender) == ["/opt/blender-4.2/blender", "/usr/bin/blender"]
    flags = parse("--name", "node-1", "--slots", "3", "--cache-size", "1G", "--blender", "/b")
    assert (flags.name, flags.slots, flags.cache_size) == ("node-1", 3, 1024**3)
    assert blender_paths(flags.blender) == ["/b"]


def test_cpus_pin_the_slots_and_a_bad_list_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    assert cpus_for_slots(None, 1) == cpus_for_slots(None, 2) == ()  # anywhere, by default
    assert cpus_for_slots(str(allowed[0]), 1) == (allowed[0],)
    with pytest.raises(ValueError, match="CPU 4096 is not one this runner may use"):
        cpus_for_slots("4096", 1)
    with pytest.raises(ValueError, match="fewer CPUs than the 2 slots"):
        cpus_for_slots(str(allowed[0]), 2)
    argv = ["runner", "--manager", "http://127.0.0.1:9", "--api-key", "k", "--cpus", "0-x"]
    assert main(argv) != 0
    assert "not a CPU list: '0-x'" in capsys.readouterr().err
