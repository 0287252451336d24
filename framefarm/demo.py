"""``framefarm demo``: a whole farm on this machine rendering a scene it builds itself."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from framefarm.submit import download_outputs, make_client, submit_blend, wait_for_job
from manager.apikeys import create_api_key
from manager.db import make_engine, migrate, session_scope
from manager.settings import database_url
from manager.users import create_user
from runner.blender import BlenderBackend, blender_env, build_script_argv
from runner.cli import choose_backend
from shared.wire import ApiKeyScope

DEMO_FRAMES = "1-8"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a manager and a runner here and render a small scene end to end"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("framefarm-demo"),
        help="folder for the demo's database, storage, logs and EXRs (emptied first)",
    )
    parser.add_argument("--port", type=int, default=0, help="manager port (default: a free one)")
    parser.add_argument("--frames", default=DEMO_FRAMES, help=f"frames (default {DEMO_FRAMES})")
    parser.add_argument("--size", type=int, default=128, help="square resolution in pixels")
    parser.add_argument("--blender", help="Blender executable or Python with bpy for the runner")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the manager and runner up until Ctrl-C, to explore the API",
    )
    parser.set_defaults(handler=run)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the manager exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the manager did not answer at {url} within {timeout:.0f} s")


@contextmanager
def background(
    argv: list[str], log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def build_scene(backend: BlenderBackend, path: Path, *, frames: str, size: int, home: Path) -> None:
    first, last = frames.split("-") if "-" in frames else (frames, frames)
    from blender_scripts import SCRIPTS_DIR

    argv = build_script_argv(
        backend,
        SCRIPTS_DIR / "make_scene.py",
        [
            "--output",
            str(path),
            "--frame-start",
            first,
            "--frame-end",
            last,
            "--size",
            str(size),
            "--samples",
            "8",
            "--transparent",
        ],
    )
    result = subprocess.run(argv, env=blender_env(home), capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file():
        raise RuntimeError(
            f"building the demo scene failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )


def run(args: argparse.Namespace) -> int:
    console = Console()
    root = args.dir.resolve()
    if root.exists():
        shutil.rmtree(root)
    (root / "logs").mkdir(parents=True)
    db_path = root / "framefarm.db"
    engine = make_engine(database_url(str(db_path)))
    migrate(engine)
    with session_scope(engine) as session:
        admin = create_user(session, email="admin@framefarm.local", name="admin", is_admin=True)
        runner_key = create_api_key(session, name="demo runner", scope=ApiKeyScope.RUNNER).key
        user_key = create_api_key(session, name="demo", scope=ApiKeyScope.USER, user=admin).key
    engine.dispose()

    backend = choose_backend(args.blender)
    console.print(f"[bold]framefarm demo[/] in {root}\n  Blender: {backend.label}")
    scene = root / "demo_scene.blend"
    with console.status("building an animated scene with Blender…"):
        build_scene(backend, scene, frames=args.frames, size=args.size, home=root / "blender-home")

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FRAMEFARM_API_KEY", None)
    manager_argv = [
        sys.executable,
        "-m",
        "framefarm",
        "manager",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(db_path),
        "--storage",
        str(root / "storage"),
    ]
    runner_argv = [
        sys.executable,
        "-m",
        "framefarm",
        "runner",
        "--manager",
        url,
        "--api-key",
        runner_key,
        "--name",
        "demo-runner",
        "--workdir",
        str(root / "runner"),
    ]
    if args.blender:
        runner_argv += ["--blender", args.blender]
    with background(manager_argv, root / "logs" / "manager.log", env) as manager:
        wait_until_healthy(url, manager)
        console.print(f"  manager: {url}, logs in {root / 'logs'}")
        with (
            background(runner_argv, root / "logs" / "runner.log", env),
            make_client(url, user_key) as client,
        ):
            job = submit_blend(client, scene, frames=args.frames, name="demo", chunk_size=2)
            console.print(
                f"  submitted job {job['id']}: frames {job['frames']} "
                f"in {job['tasks']['total']} tasks"
            )
            with Progress(
                TextColumn("[bold]rendering"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                bar = progress.add_task("frames", total=job["frame_count"], status="queued")

                def show(status: dict[str, Any]) -> None:
                    progress.update(bar, completed=status["frames_done"], status=status["status"])

                status = wait_for_job(client, job["id"], on_status=show, timeout=600, poll=0.5)
            if not status["succeeded"]:
                console.print(f"[red]job {status['status']}[/]: {status['failure_reason']}")
                console.print(f"  logs: {root / 'logs'}")
                return 1
            outputs = download_outputs(client, job["id"], root / "output")
            console.print(
                f"[green]job {job['id']} completed[/]: "
                f"{len(outputs)} EXR frames in {root / 'output'}"
            )
            for path in outputs:
                console.print(f"  {path}")
            console.print(
                f"  stored on the manager under {root / 'storage' / 'outputs' / str(job['id'])}"
            )
            if args.keep_running:
                console.print(
                    f"the manager keeps running at {url} (job: {url}/api/jobs/{job['id']}, "
                    f"API docs: {url}/docs); press Ctrl-C to stop.\n"
                    f"  user API key for this demo farm (shown once): {user_key}"
                )
                try:
                    while manager.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
    return 0
