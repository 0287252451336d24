"""Dispatch benchmark: simulated runners claiming short tasks from a real manager.

    python -m benchmarks.dispatch [--runners 200] [--jobs 100] [--tasks 20] [--db URL]

Every job is a chain (each task depends on the one before), so at most one task per job is
runnable at a time and idle runners are always waiting in a long poll. A simulated runner
does what the runner does: it completes a task and asks for the next in one request
(``claim?completed=…&wait=0``), and waits in a long poll when that brought nothing. Dispatch
latency is the time from the moment a task became runnable to the moment a runner holds it
(its claim was answered); a task becomes runnable inside its predecessor's completion, so it
is timed from the moment that request was sent (an upper bound: it counts the completion's
own wait in the manager's queue too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
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
from manager.models import Job, Task, TaskDependency
from shared.wire import TaskType


def create_chained_jobs(db_url: str, jobs: int, tasks: int) -> None:
    engine = make_engine(db_url)
    with Session(engine) as session:
        for number in range(jobs):
            job = Job(
                name=f"chain-{number}",
                frames=f"1-{tasks}",
                frame_count=tasks,
                chunk_size=1,
                blend_file="-",
                job_type="echo-sleep-test",
            )
            session.add(job)
            session.flush()
            chain = [
                Task(job_id=job.id, name=f"step-{order + 1}", type=TaskType.MISC, task_order=order)
                for order in range(tasks)
            ]
            session.add_all(chain)
            session.flush()
            session.add_all(
                TaskDependency(task_id=task.id, depends_on_id=previous.id)
                for previous, task in zip(chain, chain[1:], strict=False)
            )
        session.commit()
        # as the manager does after a submission that grows the tasks table this much
        refresh_statistics_after(session, jobs * tasks)
    engine.dispose()


async def simulate(url: str, key: str, runners: int, total: int, work_s: float) -> dict:
    ready_at: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    problems: Counter[str] = Counter()
    claimed = 0
    first_claim = last_claim = 0.0
    done = asyncio.Event()
    clients = async_clients(url, key, runners)

    async def post(client: SimClient, path: str, **options: Any) -> Reply:
        """As a real runner does: a dropped connection or a busy manager is tried again."""
        for _ in range(50):
            try:
                reply = await client.post(path, **options)
            except TransportError as exc:
                problems[f"retried after {type(exc).__name__}"] += 1
            else:
                if reply.status_code != 503:
                    return reply
                problems["retried after 503 busy"] += 1
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the manager did not answer {path}")

    async def runner(index: int) -> None:
        nonlocal claimed, first_claim, last_claim
        client = clients[index]
        reply = await post(
            client,
            "/api/runner/register",
            json={"name": f"sim-{index:03d}", "task_types": ["misc"]},
        )
        reply.raise_for_status()
        runner_id = reply.json()["id"]
        claim = f"/api/runner/{runner_id}/claim"
        handed: Reply | None = None
        while not done.is_set():
            # As the runner does: the completion asked for the next task; when it brought
            # none, wait for one in a long poll.
            response = handed or await post(client, claim, params={"wait": 30})
            handed = None
            if response.status_code == 204:
                continue
            response.raise_for_status()
            now = time.perf_counter()
            task = response.json()
            job_id, step = task["job"]["id"], int(task["name"].split("-")[1])
            if (job_id, step) in ready_at:
                latencies.append(now - ready_at.pop((job_id, step)))
            claimed += 1
            first_claim = first_claim or now
            last_claim = now
            await asyncio.sleep(work_s)
            # The successor becomes runnable inside this request: timed from sending it
            # (noted first: another runner's claim may take it before this one is answered).
            ready_at[(job_id, step + 1)] = time.perf_counter()
            finish = await post(client, claim, params={"wait": 0, "completed": task["id"]})
            if finish.status_code == 409:  # requeued: the runner was silent too long
                problems["tasks taken back (runner silent past the timeout)"] += 1
                ready_at.pop((job_id, step + 1), None)
                continue
            if finish.status_code not in (200, 204):
                raise RuntimeError(f"completing task {task['id']}: {finish.text}")
            handed = finish
            if claimed >= total:
                done.set()

    try:
        workers = [asyncio.create_task(runner(i)) for i in range(runners)]
        await done.wait()
        for worker in workers:
            worker.cancel()
        outcomes = await asyncio.gather(*workers, return_exceptions=True)
        errors = [
            o
            for o in outcomes
            if isinstance(o, Exception) and not isinstance(o, asyncio.CancelledError)
        ]
        if errors:
            raise RuntimeError(f"{len(errors)} simulated runners failed, first: {errors[0]!r}")
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return {
        "claims": claimed,
        "seconds": last_claim - first_claim,
        "latencies": latencies,
        "problems": problems,
    }


def claim_attempts(url: str) -> float:
    """How many times runners looked for work in the database (the manager's metrics)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("framefarm_claim_seconds_count"):
            return float(line.split()[-1])
    raise RuntimeError("the manager's /metrics has no framefarm_claim_seconds_count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=20, help="tasks per job (a chain)")
    parser.add_argument("--work-ms", type=float, default=5.0, help="simulated work per task")
    parser.add_argument("--db", help="database (default: SQLite in the work folder)")
    parser.add_argument("--workdir", type=Path, help="keep the manager's files and log here")
    args = parser.parse_args()
    console = Console()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_manager(args.workdir or Path(tmp), args.db) as manager,
    ):
        create_chained_jobs(manager.db_url, args.jobs, args.tasks)
        total = args.jobs * args.tasks
        load_before, cpu_before = os.getloadavg()[0], manager.cpu_seconds()
        simulation_cpu = time.process_time()
        result = asyncio.run(
            simulate(manager.url, manager.runner_key, args.runners, total, args.work_ms / 1000)
        )
        simulation_cpu = time.process_time() - simulation_cpu
        cpu = manager.cpu_seconds() - cpu_before
        attempts = claim_attempts(manager.url)
        load_after = os.getloadavg()[0]
    latencies = [s * 1000 for s in result["latencies"]]
    table = Table(title=f"dispatch: {args.runners} runners, {total} tasks ({args.jobs} chains)")
    columns = ("database", "claims/s", "dispatch p50 ms", "p99 ms", "max ms", "samples")
    for column in (*columns, "manager CPU ms/claim", "runners' CPU ms/claim"):
        table.add_column(column, justify="right")
    table.add_row(
        "PostgreSQL" if args.db and args.db.startswith("postgresql") else "SQLite",
        f"{result['claims'] / result['seconds']:.0f}",
        f"{percentile(latencies, 50):.1f}",
        f"{percentile(latencies, 99):.1f}",
        f"{max(latencies):.1f}",
        str(len(latencies)),
        f"{cpu * 1000 / result['claims']:.2f}",
        f"{simulation_cpu * 1000 / result['claims']:.2f}",
    )
    console.print(table)
    console.print(f"claim attempts (database looks) per task claimed: {attempts / total:.2f}")
    # Other work on the machine shares its cores with the manager and the runners.
    console.print(f"load average (1 min) before {load_before:.1f}, after {load_after:.1f}")
    for problem, count in sorted(result["problems"].items()):
        console.print(f"{problem}: {count}")


if __name__ == "__main__":
    main()
