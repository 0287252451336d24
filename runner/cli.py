"""``framefarm runner``: render tasks from a manager."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from runner.blender import BlenderBackend, BlenderNotFound, detect_backend, find_backends
from runner.client import ManagerClient
from runner.encode import EncodeError, probe_ffmpeg
from runner.errors import RunnerError
from runner.ffmpeg import supported_deliverables
from runner.loop import Runner, StopControl
from runner.workspace import Workspace

log = logging.getLogger("framefarm.runner")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runner", help="render tasks from a manager", description="Claim tasks and render them."
    )
    parser.add_argument(
        "--manager",
        default=os.environ.get("FRAMEFARM_MANAGER"),
        help="manager URL, e.g. http://farm:8080 (FRAMEFARM_MANAGER)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FRAMEFARM_API_KEY"),
        help="a runner API key (FRAMEFARM_API_KEY)",
    )
    parser.add_argument(
        "--name",
        default=os.environ.get("FRAMEFARM_RUNNER_NAME") or socket.gethostname(),
        help="runner name shown on the manager (default: host name)",
    )
    parser.add_argument(
        "--blender",
        help="a Blender executable, or a Python interpreter that can import bpy "
        "(default: bpy in this Python, then 'blender' on PATH)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("FRAMEFARM_RUNNER_WORKDIR", "framefarm-runner")),
        help="cache and job folders (FRAMEFARM_RUNNER_WORKDIR, default ./framefarm-runner)",
    )
    parser.add_argument("--threads", type=int, default=None, help="render threads (default: all)")
    parser.add_argument(
        "--tags",
        default=os.environ.get("FRAMEFARM_RUNNER_TAGS"),
        help="comma-separated tags; jobs with a tag go only to runners that have it "
        "(FRAMEFARM_RUNNER_TAGS; default: keep what the manager has)",
    )
    parser.add_argument(
        "--ffmpeg", default="ffmpeg", help="FFmpeg for video encode tasks (default: on PATH)"
    )
    parser.add_argument(
        "--task-types",
        help="comma-separated task types this runner takes (default: all it can: blender, "
        "ffmpeg, file-management, misc)",
    )
    parser.add_argument("--log-file", type=Path, help="also write plain logs to this file")
    parser.add_argument("--max-tasks", type=int, help="exit after this many tasks")
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


def run(args: argparse.Namespace) -> int:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.manager or not args.api_key:
        print(
            "error: give --manager URL and --api-key KEY (or FRAMEFARM_MANAGER and "
            "FRAMEFARM_API_KEY)",
            file=sys.stderr,
        )
        return 2
    try:
        backend = choose_backend(args.blender)
    except BlenderNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = StopControl()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.finish.is_set():
            log.warning("second %s: aborting the current task", signal.Signals(signum).name)
        else:
            log.warning(
                "%s: finishing the current task, then exiting (again to abort now)",
                signal.Signals(signum).name,
            )
        stop.request()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    client = ManagerClient(args.manager, args.api_key)
    tags = _split(args.tags)
    ffmpeg, capabilities = probe_video(args.ffmpeg)
    runner = Runner(
        client,
        backend,
        Workspace(args.workdir),
        name=args.name,
        stop=stop,
        threads=args.threads,
        tags=tags,
        ffmpeg=ffmpeg,
        capabilities=capabilities,
        only_task_types=_split(args.task_types),
    )
    try:
        runner.run(max_tasks=args.max_tasks)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
