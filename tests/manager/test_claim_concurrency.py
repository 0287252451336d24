"""32 runners claiming 2,000 tasks at once: each task exactly once, no deadlock, no error."""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import Engine
from sqlmodel import Session, func, select

from manager.db import session_scope
from manager.models import Task
from manager.scheduler import claim_next_task
from tests.manager.factories import make_job, make_runner
from tests.manager.test_scheduler import engine  # noqa: F401 (fixture)

CLAIMERS = 32
TASKS = 2000


def test_concurrent_claims_hand_out_each_task_exactly_once(engine: Engine):  # noqa: F811
    with session_scope(engine) as session:
        for priority in (30, 60):
            make_job(session, tasks=TASKS // 2, priority=priority)
        runners = [make_runner(session, f"node-{i:02d}") for i in range(CLAIMERS)]
    claimed: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(CLAIMERS)
    lock = threading.Lock()

    def claim_until_empty(runner_index: int) -> None:
        runner = runners[runner_index]
        start.wait()
        try:
            while (task_id := claim_next_task(engine, runner, lease_seconds=60)) is not None:
                with lock:
                    claimed.append((task_id, runner_index))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    began = time.monotonic()
    threads = [threading.Thread(target=claim_until_empty, args=(i,)) for i in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - began
    assert not any(thread.is_alive() for thread in threads), "a claimer hung (deadlock?)"
    assert errors == []
    counts = Counter(task_id for task_id, _ in claimed)
    assert len(counts) == TASKS
    assert max(counts.values()) == 1
    with Session(engine) as session:
        active = session.exec(
            select(func.count()).select_from(Task).where(Task.status == "active")
        ).one()
        owners = session.exec(select(Task.id, Task.runner_id)).all()
    assert active == TASKS
    expected_owner = {task_id: runners[index].id for task_id, index in claimed}
    assert dict(owners) == expected_owner
    assert len({index for _, index in claimed}) > 1, "only one claimer ever won"
    print(f"{TASKS} claims by {CLAIMERS} threads in {elapsed:.2f} s")
