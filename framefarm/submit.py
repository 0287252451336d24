"""``framefarm submit``: send a .blend to a manager from a shell or a pipeline."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from shared.frames import FrameRangeError, parse_frame_range


class SubmitError(Exception):
    """The manager refused or could not be reached; the message says why."""


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body['message']} ({body['code']}, HTTP {response.status_code})"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}: {response.text[:300]}"
        raise SubmitError(message)
    return response


RETRY_STATUSES = (503, 507)
"""Busy database, full storage: the manager kept nothing, so sending again is safe."""


class RetryingTransport(httpx.BaseTransport):
    """Sends a request again, after the manager's ``Retry-After``, while it answers 503 or 507.

    Gives up (returning the last answer) once ``give_up_after`` seconds have passed. Request
    bodies are re-read from the start, which httpx does for files and in-memory content.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        give_up_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Callable[[httpx.Response, float], None] | None = None,
    ) -> None:
        self.inner, self.give_up_after = inner, give_up_after
        self.sleep, self.clock, self.on_retry = sleep, clock, on_retry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = self.clock() + self.give_up_after
        while True:
            response = self.inner.handle_request(request)
            if response.status_code not in RETRY_STATUSES:
                return response
            delay = _retry_after(response)
            if self.clock() + delay > deadline:
                return response
            response.read()
            response.close()
            if self.on_retry is not None:
                self.on_retry(response, delay)
            self.sleep(delay)

    def close(self) -> None:
        self.inner.close()


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.1), 60.0)
    except ValueError:
        return 1.0


def _say_retrying(response: httpx.Response, delay: float) -> None:
    print(f"  manager answered {response.status_code}; retrying in {delay:g} s", file=sys.stderr)


def make_client(manager: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=manager.rstrip("/"),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=httpx.Timeout(600.0, connect=10.0),
        transport=RetryingTransport(httpx.HTTPTransport(), on_retry=_say_retrying),
    )


def submit_blend(
    client: httpx.Client,
    blend: Path,
    *,
    frames: str,
    name: str | None = None,
    priority: int = 50,
    chunk_size: int | None = None,
    scene: str | None = None,
    job_type: str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, str] = {"frames": frames, "priority": str(priority)}
    if chunk_size is not None:
        data["chunk_size"] = str(chunk_size)
    if job_type:
        data["type"] = job_type
    if settings:
        data["settings"] = json.dumps(settings)
    if name:
        data["name"] = name
    if scene:
        data["scene"] = scene
    with open(blend, "rb") as f:
        response = _check(
            client.post(
                "/api/jobs", data=data, files={"file": (blend.name, f, "application/octet-stream")}
            )
        )
    job: dict[str, Any] = response.json()
    return job


def wait_for_job(
    client: httpx.Client,
    job_id: int,
    *,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
    poll: float | None = None,
) -> dict[str, Any]:
    """Follow ``/status`` (202 + Retry-After while running) until the job is finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        response = _check(client.get(f"/api/jobs/{job_id}/status"))
        status: dict[str, Any] = response.json()
        if on_status:
            on_status(status)
        if response.status_code == 200:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise SubmitError(f"job {job_id} did not finish within {timeout:.0f} s")
        time.sleep(poll if poll is not None else float(response.headers.get("Retry-After", "2")))


def download_outputs(client: httpx.Client, job_id: int, dest: Path) -> list[Path]:
    listing = _check(client.get(f"/api/jobs/{job_id}/outputs")).json()
    paths = []
    for output in listing["outputs"]:
        target = dest / output["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with client.stream("GET", output["url"]) as response:
            if response.status_code >= 400:
                response.read()
                _check(response)
            with open(target, "wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
        paths.append(target)
    return paths


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="submit a .blend to a manager",
        description="Upload a .blend and render a frame range on the farm.",
    )
    parser.add_argument("blend", type=Path, help="the .blend file")
    parser.add_argument("--frames", required=True, help="frame range, e.g. 1-250 or 1,5,10-20")
    parser.add_argument("--name", help="job name (default: the file name)")
    parser.add_argument("--priority", type=int, default=50, help="0-100, higher first")
    parser.add_argument(
        "--chunk-size", type=int, help="frames per task (default: the farm's setting)"
    )
    parser.add_argument("--type", default=None, help="job type (default: simple-blender-render)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a job type setting as KEY=VALUE (VALUE is JSON, or else a string), "
        "e.g. --set deliverable=EXR_264_MP4 --set fps=24 --set bitrate_kbps=8000",
    )
    parser.add_argument("--scene", help="scene to render (default: the file's active scene)")
    parser.add_argument(
        "--manager",
        default=os.environ.get("FRAMEFARM_MANAGER", "http://localhost:8080"),
        help="manager URL (FRAMEFARM_MANAGER)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FRAMEFARM_API_KEY"),
        help="a user API key (FRAMEFARM_API_KEY)",
    )
    parser.add_argument("--wait", action="store_true", help="wait until the job finishes")
    parser.add_argument("--download", type=Path, help="with --wait: save the outputs here")
    parser.set_defaults(handler=run)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            settings[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key.strip()] = raw  # a bare word is a string
    return settings


def run(args: argparse.Namespace) -> int:
    if not args.api_key:
        print("error: give --api-key (or FRAMEFARM_API_KEY): a user API key", file=sys.stderr)
        return 2
    if not args.blend.is_file():
        print(f"error: {args.blend} does not exist", file=sys.stderr)
        return 2
    try:
        parse_frame_range(args.frames)
    except FrameRangeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with make_client(args.manager, args.api_key) as client:
            job = submit_blend(
                client,
                args.blend,
                frames=args.frames,
                name=args.name,
                priority=args.priority,
                chunk_size=args.chunk_size,
                scene=args.scene,
                job_type=args.type,
                settings=_parse_sets(args.set),
            )
            print(f"job {job['id']} queued: {args.manager.rstrip('/')}/api/jobs/{job['id']}")
            if not args.wait:
                return 0

            def show(status: dict[str, Any]) -> None:
                print(
                    f"  {status['status']}: {status['frames_done']}/{status['frame_count']} frames",
                    file=sys.stderr,
                )

            status = wait_for_job(client, job["id"], on_status=show)
            if status["succeeded"] and args.download:
                for path in download_outputs(client, job["id"], args.download):
                    print(path)
    except (SubmitError, httpx.TransportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not status["succeeded"]:
        print(
            f"job {job['id']} {status['status']}: {status['failure_reason'] or ''}", file=sys.stderr
        )
        return 1
    return 0
