"""Every scheduling rule, on SQLite and PostgreSQL, with an injected clock where time matters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text, update
from sqlmodel import Session, select

from manager import sweeper as sweeper_module
from manager.db import make_engine, migrate, session_scope
from manager.errors import Conflict
from manager.failures import fail_task
from manager.farm_settings import set_setting
from manager.job_control import (
    cancel_job,
    complete_task,
    pause_job,
    release_task,
    requeue_job,
    resume_job,
)
from manager.models import Job, JobBlocklist, Runner, Task, utcnow
from manager.scheduler import claim_next_task
from manager.states import check_job_transition, check_task_transition
from manager.sweeper import sweep
from shared.wire import JobStatus, TaskStatus
from tests.manager.factories import make_job, make_runner

LEASE = 30.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def claim(engine: Engine, runner: Runner) -> Task | None:
    task_id = claim_next_task(engine, runner, lease_seconds=LEASE)
    if task_id is None:
        return None
    with Session(engine) as session:
        return session.get(Task, task_id)


def runners(engine: Engine, *names: str, **options: object) -> list[Runner]:
    with session_scope(engine) as session:
        made = [make_runner(session, name, **options) for name in names]  # type: ignore[arg-type]
        return made


def job_with_tasks(engine: Engine, **options: object) -> tuple[Job, list[Task]]:
    with session_scope(engine) as session:
        return make_job(session, **options)  # type: ignore[arg-type]


def report_failure(engine: Engine, task_id: int, runner: Runner, reason: str = "boom") -> None:
    with session_scope(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        job = session.get(Job, task.job_id)
        assert job is not None
        fail_task(session, task, job, session.get(Runner, runner.id), reason)


def report_done(engine: Engine, task_id: int) -> None:
    with session_scope(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        job = session.get(Job, task.job_id)
        assert job is not None
        complete_task(session, task, job)


def heartbeat(engine: Engine, runner: Runner, seconds_from_now: float):  # type: ignore[no-untyped-def]
    """The runner heartbeats at now + seconds: it stays online and its leases are extended."""
    at = utcnow() + timedelta(seconds=seconds_from_now)
    with session_scope(engine) as session:
        row = session.get(Runner, runner.id)
        assert row is not None
        row.last_seen_at = at
        for task in session.exec(select(Task).where(Task.runner_id == runner.id)).all():
            task.lease_expires_at = at + timedelta(seconds=LEASE)
    return at


def status_of(engine: Engine, model: type, key: int) -> str:
    with Session(engine) as session:
        row = session.get(model, key)
        assert row is not None
        return str(row.status)


# -- what a runner may claim --------------------------------------------------------------


def test_priority_then_submission_then_task_order(engine: Engine):
    low, _ = job_with_tasks(engine, tasks=2, priority=10, name="low")
    first, _ = job_with_tasks(engine, tasks=2, priority=80, name="first")
    second, _ = job_with_tasks(engine, tasks=1, priority=80, name="second")
    (node,) = runners(engine, "node")
    order = []
    while (task := claim(engine, node)) is not None:
        order.append((task.job_id, task.name))
    assert order == [
        (first.id, "render-1"),
        (first.id, "render-2"),
        (second.id, "render-1"),
        (low.id, "render-1"),
        (low.id, "render-2"),
    ]
    assert status_of(engine, Job, first.id) == "active"


def test_a_claim_starts_its_job_and_marks_its_runner_and_nothing_more(engine: Engine):
    # (on PostgreSQL the three are one statement: each part must still happen, and only then)
    job, _ = job_with_tasks(engine, tasks=1)
    other, _ = job_with_tasks(engine, tasks=1, name="other")
    node, idle = runners(engine, "node", "idle")
    now = utcnow()
    task = claim_next_task(engine, node, lease_seconds=30, now=now)
    assert task is not None
    with Session(engine) as session:
        claimed, started = session.get(Task, task), session.get(Job, job.id)
        waiting = session.get(Job, other.id)
        marked, untouched = session.get(Runner, node.id), session.get(Runner, idle.id)
        assert claimed is not None and claimed.runner_id == node.id and claimed.attempts == 1
        assert claimed.lease_expires_at == now + timedelta(seconds=30)
        assert started is not None and started.status == "active" and started.started_at == now
        assert waiting is not None and waiting.status == "queued" and waiting.started_at is None
        assert marked is not None and marked.status == "working" and marked.last_seen_at == now
        assert untouched is not None and untouched.status != "working"
    # The other runner takes the other job's task; then nothing is left: seen, marked idle.
    assert claim_next_task(engine, idle, lease_seconds=30, now=now) is not None
    later = now + timedelta(seconds=5)
    assert claim_next_task(engine, idle, lease_seconds=30, now=later, seen=True) is None
    with Session(engine) as session:
        runner = session.get(Runner, idle.id)
        assert runner is not None and (runner.status, runner.last_seen_at) == ("idle", later)


def test_dependencies_must_complete_first(engine: Engine):
    _, tasks = job_with_tasks(engine, tasks=3, chain=True)
    (node,) = runners(engine, "node")
    first = claim(engine, node)
    assert first is not None and first.id == tasks[0].id
    assert claim(engine, node) is None  # render-2 waits on render-1
    report_done(engine, first.id)
    second = claim(engine, node)
    assert second is not None and second.id == tasks[1].id


def test_runner_gets_only_task_types_it_supports(engine: Engine):
    job_with_tasks(engine, tasks=1)
    ffmpeg_only, blender = runners(engine, "encoder", task_types=["ffmpeg"]) + runners(
        engine, "renderer"
    )
    assert claim(engine, ffmpeg_only) is None
    assert claim(engine, blender) is not None


def test_tagged_jobs_go_only_to_runners_with_the_tag(engine: Engine):
    tagged, _ = job_with_tasks(engine, tasks=1, tag="gpu", priority=90)
    untagged, _ = job_with_tasks(engine, tasks=1)
    (plain,) = runners(engine, "plain")
    (gpu,) = runners(engine, "gpu-node", tags=["gpu", "linux"])
    got = claim(engine, plain)
    assert got is not None and got.job_id == untagged.id
    assert claim(engine, plain) is None
    got = claim(engine, gpu)
    assert got is not None and got.job_id == tagged.id


def test_pinned_jobs_run_only_on_their_runners(engine: Engine):
    job_with_tasks(engine, tasks=1, pins=["node-b"])
    node_a, node_b = runners(engine, "node-a", "node-b")
    assert claim(engine, node_a) is None
    assert claim(engine, node_b) is not None


def test_disabled_runner_gets_nothing(engine: Engine):
    job_with_tasks(engine, tasks=1)
    (off,) = runners(engine, "off", enabled=False)
    assert claim(engine, off) is None


def test_paused_and_canceled_jobs_hand_out_nothing(engine: Engine):
    job, _ = job_with_tasks(engine, tasks=2)
    (node,) = runners(engine, "node")
    with session_scope(engine) as session:
        pause_job(session, session.get(Job, job.id))
    assert status_of(engine, Job, job.id) == "paused"
    assert claim(engine, node) is None
    with session_scope(engine) as session:
        resume_job(session, session.get(Job, job.id))
    assert claim(engine, node) is not None
    with session_scope(engine) as session:
        cancel_job(session, session.get(Job, job.id))
    assert claim(engine, node) is None


# -- failure policy -----------------------------------------------------------------------


def test_a_failed_task_goes_to_another_runner(engine: Engine):
    _, tasks = job_with_tasks(engine, tasks=2)
    node_a, node_b = runners(engine, "a", "b")
    first = claim(engine, node_a)
    assert first is not None
    report_failure(engine, first.id, node_a)
    assert status_of(engine, Task, first.id) == "soft-failed"
    again = claim(engine, node_a)
    assert again is not None and again.id == tasks[1].id  # not the one it failed
    retry = claim(engine, node_b)
    assert retry is not None and retry.id == first.id


def test_task_fails_after_threshold_of_different_runners(engine: Engine):
    with session_scope(engine) as session:
        set_setting(session, "task-fail-threshold", "2")
    _, tasks = job_with_tasks(engine, tasks=20)
    node_a, node_b, _ = runners(engine, "a", "b", "c")
    for node in (node_a, node_b):
        task = claim(engine, node)
        assert task is not None and task.id == tasks[0].id
        report_failure(engine, task.id, node, reason=f"out of memory on {node.name}")
    with Session(engine) as session:
        failed = session.get(Task, tasks[0].id)
        assert failed is not None
        assert failed.status == "failed"
        assert "failed on 2 different runners" in (failed.failure_reason or "")
        assert "out of memory on b" in (failed.failure_reason or "")
    assert status_of(engine, Job, tasks[0].job_id) == "active"  # 1 of 20 is under 10%


def test_job_fails_when_ten_percent_of_tasks_failed(engine: Engine):
    with session_scope(engine) as session:
        set_setting(session, "task-fail-threshold", "1")
    job, _ = job_with_tasks(engine, tasks=20)
    node_a, _ = runners(engine, "a", "b")
    for expected in ("active", "failed"):
        task = claim(engine, node_a)
        assert task is not None
        report_failure(engine, task.id, node_a)
        assert status_of(engine, Job, job.id) == expected
    with Session(engine) as session:
        final = session.get(Job, job.id)
        assert final is not None
        assert "2 of 20 tasks failed" in (final.failure_reason or "")
        left = session.exec(select(Task).where(Task.job_id == job.id)).all()
        assert {t.status for t in left} == {"failed", "canceled"}


def test_runner_is_blocklisted_after_failing_three_tasks_of_a_job(engine: Engine):
    job, _ = job_with_tasks(engine, tasks=5)
    other_job, _ = job_with_tasks(engine, tasks=1, priority=10)
    flaky, healthy = runners(engine, "flaky", "healthy")
    for _ in range(3):
        task = claim(engine, flaky)
        assert task is not None and task.job_id == job.id
        report_failure(engine, task.id, flaky, reason="segfault")
    with Session(engine) as session:
        entry = session.get(JobBlocklist, (job.id, flaky.id))
        assert entry is not None
        assert "flaky failed 3 tasks" in entry.reason
    elsewhere = claim(engine, flaky)
    assert elsewhere is not None and elsewhere.job_id == other_job.id
    assert claim(engine, healthy).job_id == job.id  # type: ignore[union-attr]
    assert status_of(engine, Job, job.id) == "active"


def test_job_fails_when_no_capable_runner_is_left(engine: Engine):
    job, _ = job_with_tasks(engine, tasks=3)
    (only,) = runners(engine, "only")
    runners(engine, "encoder", task_types=["ffmpeg"])  # not capable: does not keep the job alive
    task = claim(engine, only)
    assert task is not None
    report_failure(engine, task.id, only, reason="Blender exited with code 1")
    with Session(engine) as session:
        failed = session.get(Job, job.id)
        assert failed is not None
        assert failed.status == "failed"
        assert "no runner is left that may run task render-1" in (failed.failure_reason or "")
        assert "Blender exited with code 1" in (failed.failure_reason or "")


# -- time: offline runners, leases, timeouts -----------------------------------------------


def test_silent_runner_goes_offline_and_its_tasks_are_requeued(engine: Engine):
    job_with_tasks(engine, tasks=1)
    (node,) = runners(engine, "node")
    task = claim(engine, node)
    assert task is not None
    with session_scope(engine) as session:
        assert sweep(session, runner_timeout=30, now=utcnow() + timedelta(seconds=10)) == []
    with session_scope(engine) as session:
        assert sweep(session, runner_timeout=30, now=utcnow() + timedelta(seconds=31)) == [task.id]
    assert status_of(engine, Runner, node.id) == "offline"
    with Session(engine) as session:
        back = session.get(Task, task.id)
        assert back is not None
        assert back.status == "queued" and back.runner_id is None
        assert "went offline" in back.activity


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_managers_sweeping_at_once_release_a_lost_task_once(engine: Engine):
    """Several manager processes each sweep; the second to start skips its pass instead of
    releasing the same task again (its attempt would be given back twice)."""
    job_with_tasks(engine, tasks=1)
    (node,) = runners(engine, "node")
    task = claim(engine, node)
    assert task is not None
    later = utcnow() + timedelta(seconds=31)
    with session_scope(engine) as first:
        assert sweep(first, runner_timeout=30, now=later) == [task.id]
        with session_scope(engine) as second:  # while the first has not committed
            # without the sweep's lock this would wait for the first's rows: fail, not hang
            second.execute(text("SET LOCAL lock_timeout = '3s'"))
            assert sweep(second, runner_timeout=30, now=later) == []
    with session_scope(engine) as third:  # the next pass finds nothing left to release
        assert sweep(third, runner_timeout=30, now=later) == []
    with Session(engine) as session:
        back = session.get(Task, task.id)
        assert back is not None and back.status == "queued" and back.attempts == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_sweep_leaves_alone_a_task_that_finished_after_it_looked(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    """On PostgreSQL a completion may commit between the sweep's read of a lost runner's tasks
    and its release of them; the sweep reads the task again under a row lock first."""
    job_with_tasks(engine, tasks=1)
    (node,) = runners(engine, "node")
    task = claim(engine, node)
    assert task is not None
    read_tasks = sweeper_module._active_tasks

    def then_completed(session: Session, condition: object) -> list[Task]:
        found = read_tasks(session, condition)
        if found:
            with engine.begin() as other:  # the runner's completion, committed meanwhile
                other.execute(update(Task).where(Task.id == task.id).values(status="completed"))
        return found

    monkeypatch.setattr(sweeper_module, "_active_tasks", then_completed)
    with session_scope(engine) as session:
        assert sweep(session, runner_timeout=30, now=utcnow() + timedelta(seconds=31)) == []
    assert status_of(engine, Task, task.id) == "completed"


def test_task_without_progress_is_requeued_or_failed_per_policy(engine: Engine):
    with session_scope(engine) as session:
        set_setting(session, "task-timeout", "60")
    job_with_tasks(engine, tasks=2)
    node, spare = runners(engine, "node", "spare")
    stuck = claim(engine, node)
    assert stuck is not None
    with session_scope(engine) as session:
        assert sweep(session, runner_timeout=30, now=heartbeat(engine, node, 59)) == []
    with session_scope(engine) as session:
        assert sweep(session, runner_timeout=30, now=heartbeat(engine, node, 61)) == [stuck.id]
    with Session(engine) as session:
        requeued = session.get(Task, stuck.id)
        assert requeued is not None and requeued.status == "queued"
        assert "no progress for 61 s (timeout 60 s)" in requeued.activity

    with session_scope(engine) as session:
        set_setting(session, "task-timeout-policy", "fail")
    again = claim(engine, node)
    assert again is not None and again.id == stuck.id
    with session_scope(engine) as session:
        sweep(session, runner_timeout=30, now=heartbeat(engine, node, 61))
    with Session(engine) as session:
        timed_out = session.get(Task, stuck.id)
        assert timed_out is not None
        assert timed_out.status == "soft-failed"
        assert "no progress for" in (timed_out.failure_reason or "")
    assert claim(engine, spare).id == stuck.id  # type: ignore[union-attr]


# -- job control ----------------------------------------------------------------------------


def test_pause_waits_for_running_tasks_then_resume_requeues_them(engine: Engine):
    job, tasks = job_with_tasks(engine, tasks=2)
    (node,) = runners(engine, "node")
    running = claim(engine, node)
    assert running is not None
    with session_scope(engine) as session:
        pause_job(session, session.get(Job, job.id))
    assert status_of(engine, Job, job.id) == "pause-requested"
    with session_scope(engine) as session:
        release_task(session, session.get(Task, running.id), session.get(Job, job.id), reason="ok")
    assert status_of(engine, Job, job.id) == "paused"
    assert {status_of(engine, Task, t.id) for t in tasks} == {"paused"}
    with session_scope(engine) as session:
        resume_job(session, session.get(Job, job.id))
    assert status_of(engine, Job, job.id) == "queued"
    assert {status_of(engine, Task, t.id) for t in tasks} == {"queued"}


def test_requeue_failed_only_and_whole_job(engine: Engine):
    with session_scope(engine) as session:
        set_setting(session, "task-fail-threshold", "1")
        set_setting(session, "job-fail-ratio", "1")
    job, tasks = job_with_tasks(engine, tasks=2)
    node, _ = runners(engine, "node", "other")
    first = claim(engine, node)
    report_failure(engine, first.id, node)  # type: ignore[union-attr]
    second = claim(engine, node)
    report_done(engine, second.id)  # type: ignore[union-attr]
    assert status_of(engine, Job, job.id) == "active"  # one failed task, ratio 100%
    with session_scope(engine) as session:
        requeued = requeue_job(session, session.get(Job, job.id), failed_only=True)
        assert [t.name for t in requeued] == ["render-1"]
    again = claim(engine, node)  # the failure record was cleared with the requeue
    assert again is not None and again.id == tasks[0].id
    report_done(engine, again.id)
    assert status_of(engine, Job, job.id) == "completed"
    with session_scope(engine) as session:
        requeue_job(session, session.get(Job, job.id), failed_only=False)
    assert status_of(engine, Job, job.id) == "queued"
    assert {status_of(engine, Task, t.id) for t in tasks} == {"queued"}


def test_illegal_transitions_are_refused():
    with pytest.raises(Conflict, match="a completed job cannot become active"):
        check_job_transition(JobStatus.COMPLETED, JobStatus.ACTIVE)
    with pytest.raises(Conflict, match="a queued task cannot become completed"):
        check_task_transition(TaskStatus.QUEUED, TaskStatus.COMPLETED)
    assert check_job_transition(JobStatus.PAUSED, JobStatus.QUEUED) is JobStatus.QUEUED


def test_a_task_no_runner_can_take_says_why_on_its_job(engine: Engine):
    with session_scope(engine) as session:
        job, tasks = make_job(session, tasks=1, task_type="ffmpeg")
        tasks[0].capability = "encode:EXR_AV1_MP4"
        session.add(tasks[0])
    (encoder,) = runners(engine, "vp9-only", task_types=["ffmpeg"])
    with session_scope(engine) as session:
        session.get(Runner, encoder.id).capabilities = ["encode:EXR_VP9_WEBM"]  # type: ignore[union-attr]
    with session_scope(engine) as session:
        sweep(session, runner_timeout=30)
    assert claim(engine, encoder) is None
    with Session(engine) as session:
        waiting = session.get(Job, job.id)
        assert waiting is not None and waiting.status == "queued"
        assert "needs a runner with encode:EXR_AV1_MP4" in waiting.activity
    with session_scope(engine) as session:
        session.get(Runner, encoder.id).capabilities = ["encode:EXR_AV1_MP4"]  # type: ignore[union-attr]
    encoder.capabilities = ["encode:EXR_AV1_MP4"]
    assert claim(engine, encoder) is not None
