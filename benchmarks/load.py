"""Load: simulated runners heartbeating and claiming, and web viewers polling, at once.

    python -m benchmarks.load [--runners 200] [--viewers 50] [--seconds 120] [--db URL]

One real manager (uvicorn, one process) on SQLite, or on the database ``--db`` names. Every
simulated runner registers, heartbeats every 5 s, long-polls for a task, reports progress
once, "works" for ``--work-ms`` (2 s: a short frame) and completes it, asking for the next
task in the same request as the runner does; every viewer behaves
like a browser on the web page: it opens the jobs list or a job's page, then polls that page's
live part every 1.5 s as the page's script does, and opens another job every 30 s. Prints, per
kind of request, how many were made, p50 / p99 / max latency and errors. A claim's time
includes its long poll only when no task was waiting, so claims are listed apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert
from sqlmodel import Session

from benchmarks.common import (
    Reply,
    SimClient,
    TransportError,
    async_clients,
    percentile,
    running_manager,
)
from manager.db import make_engine, refresh_statistics_after
from manager.models import Job, Task, utcnow
from shared.wire import TaskType

HEARTBEAT_S = 5.0
VIEWER_PERIOD_S = 1.5
VIEWER_STAYS_S = 30.0


def create_jobs(db_url: str, jobs: int, tasks: int) -> list[int]:
    """Jobs of independent ``misc`` tasks, inserted in bulk."""
    engine = make_engine(db_url)
    ids = []
    now = utcnow()
    with Session(engine) as session:
        for number in range(jobs):
            job = Job(
                name=f"load-{number}",
                frames=f"1-{tasks}",
                frame_count=tasks,
                chunk_size=1,
                blend_file="-",
                job_type="echo-sleep-test",
            )
            session.add(job)
            session.flush()
            assert job.id is not None
            ids.append(job.id)
            rows = [
                {
                    "job_id": job.id,
                    "name": f"step-{n + 1}",
                    "type": TaskType.MISC,
                    "task_order": n,
                    "frames": [],
                    "commands": [],
                    "updated_at": now,
                }
                for n in range(tasks)
            ]
            session.execute(insert(Task), rows)
        session.commit()
        # as the manager does after a submission that grows the tasks table this much
        refresh_statistics_after(session, jobs * tasks)
    engine.dispose()
    return ids


class Recorder:
    """Latencies by kind of request: all of them, and those of the steady state (requests
    sent once every runner had registered and every viewer had its first page: the start,
    250 clients arriving in the same instant as after a manager restart, is a burst of its
    own)."""

    def __init__(self, starting: int) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.steady: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.starting = starting
        self.steady_from: float | None = None
        self.began = time.perf_counter()

    def started(self) -> None:
        """One client is past its start (registered, or its first page loaded)."""
        self.starting -= 1
        if self.starting == 0:
            self.steady_from = time.perf_counter()

    async def call(self, kind: str, request: Awaitable[Reply], ok: tuple[int, ...]) -> Reply | None:
        started = time.perf_counter()
        try:
            response = await request
        except TransportError as error:
            self.errors[kind].append(repr(error))
            return None
        elapsed = (time.perf_counter() - started) * 1000
        self.times[kind].append(elapsed)
        if self.steady_from is not None and started >= self.steady_from:
            self.steady[kind].append(elapsed)
        if response.status_code not in ok:
            self.errors[kind].append(f"{response.status_code} {response.text[:200]}")
            return None
        return response


async def simulate(args: argparse.Namespace, url: str, runner_key: str, user_key: str,
                   job_ids: list[int]) -> Recorder:  # fmt: skip
    record = Recorder(args.runners + args.viewers)
    deadline = time.monotonic() + args.seconds
    runner_clients = async_clients(url, runner_key, args.runners)
    viewer_clients = async_clients(url, user_key, args.viewers)

    async def heartbeat(runners: SimClient, runner_id: int) -> None:
        await asyncio.sleep(random.uniform(0, HEARTBEAT_S))
        while time.monotonic() < deadline:
            await record.call(
                "heartbeat", runners.post(f"/api/runner/{runner_id}/heartbeat", json={}), (200,)
            )
            await asyncio.sleep(HEARTBEAT_S)

    async def runner(index: int) -> None:
        runners = runner_clients[index]
        reply = await record.call(
            "register",
            runners.post(
                "/api/runner/register", json={"name": f"load-{index:03d}", "task_types": ["misc"]}
            ),
            (200, 201),
        )
        record.started()
        if reply is None:
            return
        runner_id = reply.json()["id"]
        beating = asyncio.create_task(heartbeat(runners, runner_id))
        claim_path = f"/api/runner/{runner_id}/claim"
        handed = None
        while time.monotonic() < deadline:
            wait = max(0.0, min(5.0, deadline - time.monotonic()))
            claim = handed or await record.call(
                "claim (long poll)", runners.post(claim_path, params={"wait": wait}), (200, 204)
            )
            handed = None
            if claim is None or claim.status_code == 204:
                continue
            task = claim.json()
            base = f"/api/runner/{runner_id}/tasks/{task['id']}"
            body = {"frames_done": 0, "activity": "working", "log": ["started"]}
            await record.call("progress", runners.post(f"{base}/progress", json=body), (200,))
            await asyncio.sleep(args.work_ms / 1000)
            # As the runner does: the completion asks for the next task in the same request.
            handed = await record.call(
                "complete + claim next",
                runners.post(claim_path, params={"wait": 0, "completed": task["id"]}),
                (200, 204),
            )
        await beating

    async def viewer(index: int) -> None:
        """A browser: opens a page, then polls its live part as the page's own script does
        (every 1.5 s); half watch the jobs list, half a job (another one every 30 s)."""
        viewers = viewer_clients[index]
        started = False
        await asyncio.sleep(random.uniform(0, VIEWER_PERIOD_S))
        while time.monotonic() < deadline:
            if index % 2:
                opened, live = "page: jobs list", "live: jobs list rows"
                page, poll = "/jobs?scope=all", "/jobs/rows?status=&scope=all"
            else:
                job_id = random.choice(job_ids)
                opened, live = "page: job", "live: job progress"
                page, poll = f"/jobs/{job_id}", f"/jobs/{job_id}/live"
            await record.call(opened, viewers.get(page), (200,))
            if not started:
                record.started()
                started = True
            switch_at = min(deadline, time.monotonic() + VIEWER_STAYS_S)
            while time.monotonic() < switch_at:
                await asyncio.sleep(VIEWER_PERIOD_S)
                await record.call(live, viewers.get(poll), (200,))
            if index % 4 == 0:  # some look at the JSON too (scripts, the add-on's job list)
                await record.call(
                    "api: jobs", viewers.get("/api/jobs", params={"limit": 20}), (200,)
                )

    try:
        await asyncio.gather(
            *(runner(i) for i in range(args.runners)), *(viewer(i) for i in range(args.viewers))
        )
    finally:
        await asyncio.gather(*(client.aclose() for client in runner_clients + viewer_clients))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=200)
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=100, help="tasks per job")
    parser.add_argument(
        "--work-ms", type=float, default=2000.0, help="simulated work per task (a short frame)"
    )
    parser.add_argument("--db", help="database (default: SQLite in the work folder)")
    parser.add_argument(
        "--workers", type=int, default=1, help="manager processes (more than one: PostgreSQL)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the manager's files and log here")
    args = parser.parse_args()
    console = Console(width=max(140, Console().width))
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_manager(args.workdir or Path(tmp), args.db, args.workers) as manager,
    ):
        job_ids = create_jobs(manager.db_url, args.jobs, args.tasks)
        load_before = os.getloadavg()[0]
        record = asyncio.run(
            simulate(args, manager.url, manager.runner_key, manager.user_key, job_ids)
        )
        load_after = os.getloadavg()[0]
    database = "PostgreSQL" if args.db and args.db.startswith("postgresql") else "SQLite"
    table = Table(
        title=f"load on {database}: {args.runners} runners, {args.viewers} viewers, "
        f"{args.seconds:g} s"
    )
    columns = ("requests", "count", "per s", "p50 ms", "p99 ms", "max ms")
    for column in (*columns, "steady p50", "steady p99", "steady max", "errors"):
        table.add_column(column, justify="right")
    api: list[float] = []
    steady: list[float] = []

    def row(kind: str, times: list[float], calm: list[float], errors: int) -> None:
        table.add_row(
            kind,
            str(len(times)),
            f"{len(times) / args.seconds:.1f}",
            *(f"{percentile(times, p):.1f}" for p in (50, 99)),
            f"{max(times, default=0):.1f}",
            *(f"{percentile(calm, p):.1f}" for p in (50, 99)),
            f"{max(calm, default=0):.1f}",
            str(errors),
        )

    for kind in sorted(set(record.times) | set(record.errors)):
        times, calm = record.times.get(kind, []), record.steady.get(kind, [])
        if kind != "claim (long poll)":
            api += times
            steady += calm
        row(kind, times, calm, len(record.errors.get(kind, [])))
    failed = sum(len(e) for k, e in record.errors.items() if k != "claim (long poll)")
    row("all but claims", api, steady, failed)
    console.print(table)
    if record.steady_from is not None:
        console.print(
            f"steady state: from {record.steady_from - record.began:.1f} s "
            "(every runner registered, every viewer's first page loaded)"
        )
    for kind, errors in record.errors.items():
        console.print(f"[red]{kind}: {len(errors)} errors, first: {errors[0]}")
    console.print(f"load average (1 min) before {load_before:.1f}, after {load_after:.1f}")


if __name__ == "__main__":
    main()
