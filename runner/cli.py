"""``framefarm runner``: render tasks from a manager.

Every flag has an environment variable: ``--manager`` and ``--api-key`` are
``FRAMEFARM_MANAGER`` and ``FRAMEFARM_API_KEY`` (shared with ``framefarm submit``); any
other ``--some-flag`` is ``FRAMEFARM_RUNNER_SOME_FLAG``. Flags win.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from runner.blender import (
    BlenderBackend,
    BlenderError,
    BlenderNotFound,
    detect_backend,
    find_backends,
)
from runner.board import RunnerBoard
from runner.client import ManagerClient
from runner.console import LiveConsole, draw_board, setup_logging, wants_live_console
from runner.devices import (
    DeviceUnavailable,
    choose_device,
    format_cpu_list,
    parse_cpu_list,
    probe_devices,
    split_for_slots,
)
from runner.encode import EncodeError, probe_ffmpeg
from runner.errors import RunnerError
from runner.ffmpeg import supported_deliverables
from runner.loop import Runner, StopControl
from runner.reports import ReportQueue
from runner.session import SessionPolicy
from runner.versions import BlenderShelf
from runner.workspace import Workspace, parse_size

log = logging.getLogger("framefarm.runner")
TRUE = ("1", "true", "yes", "on")


def env(flag: str) -> str | None:
    """The environment variable that stands in for ``--flag``."""
    if flag in ("manager", "api-key"):
        return os.environ.get("FRAMEFARM_" + flag.upper().replace("-", "_"))
    return os.environ.get("FRAMEFARM_RUNNER_" + flag.upper().replace("-", "_"))


def cpus_for_slots(given: str | None, slots: int) -> tuple[int, ...]:
    """The CPUs ``--cpus`` pins the slots' Blenders to; () leaves them anywhere (no flag).

    Not pinned by default: on the 2-core test machine two bpy 5.0 renders free to use every
    core took up to twice as long a frame, pinned 1.2 times, but two Blender 3.4 renders did
    better unpinned (the farm's own processes share the cores; benchmarks/README.md).
    """
    if given is None:
        return ()
    allowed = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
    cpus = parse_cpu_list(given)
    if not allowed or shutil.which("taskset") is None:
        raise ValueError("--cpus needs Linux and its taskset command (package util-linux)")
    outside = [cpu for cpu in cpus if cpu not in allowed]
    if outside:
        raise ValueError(
            f"--cpus {given}: CPU {outside[0]} is not one this runner may use "
            f"({format_cpu_list(allowed)})"
        )
    if len(cpus) < slots:
        raise ValueError(f"--cpus {given} has fewer CPUs than the {slots} slots: give each one")
    return cpus


def env_flag(flag: str) -> bool:
    return (env(flag) or "").strip().lower() in TRUE


def session_limit(
    flag: str,
    convert: Callable[[str], float],
    *,
    above: float,
    expected: str,
    can_be_off: bool = True,
) -> Callable[[str], Any]:
    """An argparse type for ``--flag``: a number above ``above``, or ``off`` (None)."""
    variable = "FRAMEFARM_RUNNER_" + flag.upper().replace("-", "_")
    if can_be_off:
        expected += ", or off"

    def parse(text: str) -> float | None:
        if can_be_off and text.strip().lower() == "off":
            return None
        try:
            value: float | None = convert(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= above:
            raise argparse.ArgumentTypeError(
                f"must be {expected} (got {text!r}; from --{flag} or {variable})"
            )
        return value

    return parse


def session_policy(args: argparse.Namespace) -> SessionPolicy:
    """The session limits the --session-* flags set (checked by their types)."""
    return SessionPolicy(
        baseline_frames=int(args.session_baseline_frames),
        slowdown=args.session_slowdown,
        memory_limit_bytes=(
            None if args.session_memory_limit is None else int(args.session_memory_limit)
        ),
        memory_growth=args.session_memory_growth,
        idle_s=args.session_idle,
    )


def add_session_flags(parser: argparse.ArgumentParser) -> None:
    policy = SessionPolicy()
    group = parser.add_argument_group(
        "render sessions", "when a kept Blender starts afresh (off turns a limit off)"
    )

    def limit(
        flag: str,
        convert: Callable[[str], float],
        *,
        above: float,
        expected: str,
        default: object,
        metavar: str,
        help: str,
        can_be_off: bool = True,
    ) -> None:
        group.add_argument(
            f"--{flag}",
            type=session_limit(
                flag, convert, above=above, expected=expected, can_be_off=can_be_off
            ),
            default=env(flag) or (None if default is None else str(default)),
            metavar=metavar,
            help=help,
        )

    limit(
        "session-slowdown",
        float,
        above=1,
        expected="a number above 1, e.g. 1.5",
        default=policy.slowdown,
        metavar="FACTOR",
        help="when a frame takes this many times the median of the session's first frames "
        f"(default {policy.slowdown:g})",
    )
    limit(
        "session-baseline-frames",
        int,
        above=0,
        expected="a whole number of frames, 1 or more",
        default=policy.baseline_frames,
        metavar="N",
        help=f"frames the slow-down is measured against (default {policy.baseline_frames})",
        can_be_off=False,
    )
    limit(
        "session-memory-limit",
        parse_size,
        above=0,
        expected="a size above 0, e.g. 8G",
        default=policy.memory_limit_bytes,
        metavar="SIZE",
        help="when Blender's resident memory passes this, e.g. 8G (default: off)",
    )
    limit(
        "session-memory-growth",
        float,
        above=1,
        expected="a number above 1, e.g. 2",
        default=policy.memory_growth,
        metavar="FACTOR",
        help="when Blender's resident memory passes this many times what it was after the "
        f"first frame (default {policy.memory_growth:g})",
    )
    limit(
        "session-idle",
        float,
        above=0,
        expected="a number of seconds above 0, e.g. 120",
        default=policy.idle_s,
        metavar="SECONDS",
        help=f"end a session after this long without a task of its job (default {policy.idle_s:g})",
        can_be_off=False,
    )


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runner",
        help="render tasks from a manager",
        description="Claim tasks and render them. Every --flag is also an environment "
        "variable: FRAMEFARM_MANAGER, FRAMEFARM_API_KEY, FRAMEFARM_RUNNER_<FLAG>.",
    )
    add = parser.add_argument
    add("--manager", default=env("manager"), help="manager URL, e.g. http://farm:8080")
    add("--api-key", default=env("api-key"), help="a runner API key")
    add("--name", default=env("name") or socket.gethostname(), help="default: host name")
    add(
        "--blender",
        action="append",
        default=None,  # FRAMEFARM_RUNNER_BLENDER is read in blender_paths: append would add
        help="a Blender executable, or a Python that can import bpy; repeat for several "
        "versions (default: bpy in this Python and 'blender' on PATH)",
    )
    add(
        "--workdir",
        type=Path,
        default=Path(env("workdir") or "framefarm-runner"),
        help="job folders, report queue, Blender builds, Blender's $HOME",
    )
    add("--cache-dir", type=Path, default=env("cache-dir"), help="default: WORKDIR/cache")
    add(
        "--cache-size",
        type=parse_size,
        default=env("cache-size"),
        help="evict least recently used files beyond this, e.g. 50G (default: no limit)",
    )
    add("--threads", type=int, default=env("threads"), help="render threads (default: all)")
    add("--tags", default=env("tags"), help="comma-separated tags (default: keep the manager's)")
    add("--ffmpeg", default=env("ffmpeg") or "ffmpeg", help="FFmpeg for video encode tasks")
    add("--task-types", default=env("task-types"), help="comma-separated task types to take")
    add("--log-file", type=Path, default=env("log-file"), help="also write plain logs here")
    add("--max-tasks", type=int, default=env("max-tasks"), help="exit after this many tasks")
    add(
        "--gpu",
        default=env("gpu"),
        help="render on this GPU type and fail without it: OPTIX, CUDA, HIP, ONEAPI or METAL, "
        "optionally with devices, e.g. OPTIX:0,1 (default: the best GPU found, else the CPU)",
    )
    add(
        "--force-cpu-rendering",
        action="store_true",
        default=env_flag("force-cpu-rendering"),
        help="render on the CPU even when a GPU is found",
    )
    add("--slots", type=int, default=int(env("slots") or 1), help="tasks at once (default 1)")
    add(
        "--cpus",
        default=env("cpus"),
        help="pin Blender to these CPUs, e.g. 0-7 (default: not pinned); slots share them out",
    )
    add(
        "--no-tui",
        action="store_true",
        default=env_flag("no-tui"),
        help="plain log lines instead of the live screen (always so when not a terminal)",
    )
    add(
        "--no-sessions",
        action="store_true",
        default=env_flag("no-sessions"),
        help="start Blender for every task instead of keeping it running with the job's scene",
    )
    add_session_flags(parser)
    parser.set_defaults(handler=run)


def choose_backend(path: str | None) -> BlenderBackend:
    if path:
        return detect_backend(path)
    backends = find_backends()
    if not backends:
        raise BlenderNotFound(
            "no Blender found: install Blender (or 'pip install bpy==5.0.1') or pass --blender PATH"
        )
    return backends[0]


def blender_paths(flags: list[str] | None) -> list[str]:
    """The --blender flags, else FRAMEFARM_RUNNER_BLENDER (paths joined with ':')."""
    return flags or [path for path in (env("blender") or "").split(os.pathsep) if path]


def local_blenders(paths: list[str]) -> list[BlenderBackend]:
    return [detect_backend(path) for path in paths] if paths else find_backends()


def probe_video(ffmpeg: str) -> tuple[str | None, list[str]]:
    """The FFmpeg to use and the deliverables it can encode, as capabilities."""
    try:
        info = probe_ffmpeg(ffmpeg)
    except EncodeError as exc:
        log.warning("no video encoding on this runner: %s", exc)
        return None, []
    deliverables = supported_deliverables(info)
    return info.path, [f"encode:{d}" for d in deliverables]


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _fail(message: str) -> int:
    log.error("%s", message)
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    board = RunnerBoard(name=args.name, manager=args.manager or "")
    live = wants_live_console(args.no_tui)
    setup_logging(board, live=False, log_file=args.log_file)
    if not args.manager or not args.api_key:
        return _fail(
            "give --manager URL and --api-key KEY (or FRAMEFARM_MANAGER and FRAMEFARM_API_KEY)"
        )
    if args.slots < 1:
        return _fail("--slots must be 1 or more")
    try:
        cpus = cpus_for_slots(args.cpus, args.slots)
    except ValueError as exc:
        return _fail(str(exc))
    # FFmpeg's probe runs while Blender starts: both are subprocesses, start-up adds up.
    video_probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ffmpeg-probe")
    video = video_probe.submit(probe_video, args.ffmpeg)
    video_probe.shutdown(wait=False)
    try:
        local = local_blenders(blender_paths(args.blender))
        if not local:
            raise BlenderNotFound(
                "no Blender found: install Blender (or 'pip install bpy==5.0.1') "
                "or pass --blender PATH"
            )
        try:
            devices = probe_devices(local[0])
        except DeviceUnavailable as exc:
            if args.gpu:
                raise
            log.warning("%s; rendering on the CPU", exc)  # said, not silent
            devices = []
        choice = choose_device(devices, force_cpu=args.force_cpu_rendering, gpu=args.gpu)
    except BlenderError as exc:
        return _fail(str(exc))
    client = ManagerClient(args.manager, args.api_key)
    workspace = Workspace(args.workdir, cache_dir=args.cache_dir, cache_limit=args.cache_size)
    shelf = BlenderShelf(local, client=client, folder=workspace.root / "blender-versions")
    reports = ReportQueue(
        workspace.root / "reports", client, on_state=lambda n, ok: board.set_reports(n, ok)
    )
    ffmpeg, capabilities = video.result()
    slot_devices = split_for_slots(choice, args.slots, cpus)
    board.describe(
        name=args.name,
        manager=client.base_url,
        devices=[d.label for d in slot_devices],
        blender=shelf.describe(),
    )
    stop = StopControl()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.finish.is_set():
            log.warning("second %s: aborting the current task", signal.Signals(signum).name)
            board.set_state("aborting")
        else:
            log.warning(
                "%s: finishing the current task, then exiting (again to abort now)",
                signal.Signals(signum).name,
            )
            board.set_state("finishing, then exiting")
        stop.request()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runner = Runner(
        client,
        shelf,
        workspace,
        name=args.name,
        reports=reports,
        board=board,
        stop=stop,
        threads=args.threads,
        tags=_split(args.tags),
        ffmpeg=ffmpeg,
        capabilities=capabilities,
        only_task_types=_split(args.task_types),
        devices=devices,
        slot_devices=slot_devices,
        sessions=not args.no_sessions,
        session_policy=session_policy(args),
    )
    if live:
        setup_logging(board, live=True, log_file=args.log_file)
    try:
        if live:
            console = Console()
            try:
                with LiveConsole(board, console):
                    runner.run(max_tasks=args.max_tasks)
            finally:
                # The live screen goes with the alternate screen: leave the last state behind.
                console.print(draw_board(board.snapshot(), time.time()))
        else:
            runner.run(max_tasks=args.max_tasks)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
