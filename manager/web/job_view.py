"""What the job pages show, read from the database: progress, ETA, frames, tasks, outputs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from manager.jobs import job_public, jobs_public
from manager.models import Job, Output, Runner, Task, TaskFailure, User
from manager.schemas import JobPublic
from manager.web.eta import RECENT_FRAMES, FrameTime, frame_times, job_eta
from manager.web.recent import JobVersion, Recent, job_version, job_versions, seconds_for
from shared.wire import JOB_FINISHED, TaskStatus

PREVIEW_SUFFIX = ".preview.mp4"


class TaskLine(NamedTuple):
    """What the job page shows of a task: its columns without the commands (read as plain
    rows, the ORM's objects cost half the page's time with a hundred tasks)."""

    id: int
    name: str
    status: str
    task_order: int
    frames: list[int]
    frames_done: int
    runner_id: int | None
    attempts: int
    activity: str
    failure_reason: str | None
    started_at: datetime | None
    finished_at: datetime | None


_TASK_LINE = [getattr(Task, name) for name in TaskLine._fields]


@dataclass(frozen=True)
class FrameCell:
    frame: int
    state: str  # done, active, queued, paused, failed, canceled
    runner: str | None
    seconds: float | None

    @property
    def label(self) -> str:
        words = [f"frame {self.frame}", self.state]
        if self.runner:
            words.append(f"on {self.runner}")
        if self.seconds is not None:
            words.append(f"{self.seconds:.1f} s")
        return ", ".join(words)


@dataclass(frozen=True)
class TaskRow:
    id: int
    name: str
    status: str
    frames: list[int]
    frames_done: int
    runner: str | None
    attempts: int
    activity: str
    failure_reason: str | None
    failures: list[str]
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.status == TaskStatus.QUEUED:
            return None
        if self.finished_at is not None:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def frame_range(self) -> str:
        if not self.frames:
            return ""
        first, last = self.frames[0], self.frames[-1]
        return str(first) if first == last else f"{first}–{last}"


@dataclass
class JobSummary:
    job: JobPublic
    owner_email: str | None
    runners_working: int
    eta_seconds: float | None

    @property
    def percent(self) -> int:
        if self.job.frame_count == 0:
            return 0
        return min(100, round(100 * self.job.frames_done / self.job.frame_count))

    @property
    def finished(self) -> bool:
        return self.job.status in JOB_FINISHED


@dataclass
class JobDetail:
    summary: JobSummary
    tasks: list[TaskRow]
    tasks_total: int
    cells: list[FrameCell]
    outputs: list[Output]
    frames: list[Output] = field(default_factory=list)
    previews: list[Output] = field(default_factory=list)
    last_frame: Output | None = None
    mean_frame_seconds: float | None = None


def _runner_names(session: Session, tasks: list[TaskLine]) -> dict[int, str]:
    """The names of the runners these tasks ran on (a farm has many more)."""
    ids = {t.runner_id for t in tasks if t.runner_id is not None}
    rows = session.execute(
        sa_select(col(Runner.id), col(Runner.name)).where(col(Runner.id).in_(ids))
    )
    return {runner_id: name for runner_id, name in rows}


def task_lines(session: Session, job_id: int) -> list[TaskLine]:
    query = sa_select(*_TASK_LINE).where(col(Task.job_id) == job_id).order_by(col(Task.task_order))
    return [TaskLine(*row) for row in session.execute(query)]


def _outputs(session: Session, job_id: int) -> list[Output]:
    return list(
        session.exec(select(Output).where(Output.job_id == job_id).order_by(col(Output.name)))
    )


def _times(tasks: list[TaskLine], outputs: list[Output]) -> list[FrameTime]:
    starts = {t.id: t.started_at for t in tasks}
    return frame_times(starts, ((o.task_id, o.frame, o.created_at) for o in outputs))


def _working(tasks: list[TaskLine]) -> int:
    return len({t.runner_id for t in tasks if t.status == TaskStatus.ACTIVE and t.runner_id})


def summarize(
    session: Session,
    job: Job,
    *,
    tasks: list[TaskLine] | None = None,
    outputs: list[Output] | None = None,
) -> JobSummary:
    public = job_public(session, job)
    owner = session.get(User, job.owner_id) if job.owner_id else None
    eta = None
    working = 0
    if public.status not in JOB_FINISHED:
        tasks = tasks if tasks is not None else task_lines(session, public.id)
        outputs = outputs if outputs is not None else _outputs(session, public.id)
        working = _working(tasks)
        eta = job_eta(_times(tasks, outputs), public.frame_count - public.frames_done, working)
    return JobSummary(public, owner.email if owner else None, working, eta)


def summarize_jobs(
    session: Session,
    jobs: list[Job],
    recent: Recent | None = None,
    versions: dict[int, JobVersion] | None = None,
) -> list[JobSummary]:
    """Summaries of many jobs, for the list that polls: those ``recent`` holds for the jobs'
    current versions, and the others read in a fixed number of queries."""
    if recent is None:
        return _read_summaries(session, jobs)
    versions = versions if versions is not None else job_versions(jobs)
    found: dict[int, JobSummary] = {}
    for job in jobs:
        summary = recent.get(("summary", job.id, versions[job.id or 0]))
        if isinstance(summary, JobSummary):
            found[job.id or 0] = summary
    missing = [job for job in jobs if (job.id or 0) not in found]
    for job, summary in zip(missing, _read_summaries(session, missing), strict=True):
        found[job.id or 0] = summary
        recent.put(("summary", job.id, versions[job.id or 0]), summary, seconds_for(job))
    return [found[job.id or 0] for job in jobs]


def _read_summaries(session: Session, jobs: list[Job]) -> list[JobSummary]:
    if not jobs:
        return []
    owner_ids = {job.owner_id for job in jobs if job.owner_id is not None}
    emails: dict[int, str] = {
        user_id: email
        for user_id, email in session.execute(
            sa_select(col(User.id), col(User.email)).where(col(User.id).in_(owner_ids))
        )
    }
    running = [job.id for job in jobs if job.status not in JOB_FINISHED]
    # Only tasks that ever started tell how fast a job goes (a long queue has none yet).
    starts: dict[int, dict[int, datetime | None]] = defaultdict(dict)
    working: dict[int, set[int]] = defaultdict(set)
    for task_id, job_id, status, runner_id, started_at in session.execute(
        sa_select(
            col(Task.id),
            col(Task.job_id),
            col(Task.status),
            col(Task.runner_id),
            col(Task.started_at),
        ).where(col(Task.job_id).in_(running), col(Task.started_at).is_not(None))
    ):
        starts[job_id][task_id] = started_at
        if status == TaskStatus.ACTIVE and runner_id is not None:
            working[job_id].add(runner_id)
    uploads: dict[int, list[tuple[int | None, int | None, datetime]]] = defaultdict(list)
    for job_id, task_id, frame, created_at in session.execute(
        sa_select(
            col(Output.job_id), col(Output.task_id), col(Output.frame), col(Output.created_at)
        ).where(col(Output.job_id).in_(running))
    ):
        uploads[job_id].append((task_id, frame, created_at))
    summaries = []
    for job, public in zip(jobs, jobs_public(session, jobs), strict=True):
        job_id = job.id or 0
        eta = None
        if job.status not in JOB_FINISHED:
            left = public.frame_count - public.frames_done
            times = frame_times(starts[job_id], uploads[job_id])
            eta = job_eta(times, left, len(working[job_id]))
        owner = emails.get(job.owner_id) if job.owner_id else None
        summaries.append(JobSummary(public, owner, len(working[job_id]), eta))
    return summaries


def _task_rows(session: Session, tasks: list[TaskLine], names: dict[int, str]) -> list[TaskRow]:
    failures: dict[int, list[str]] = {}
    ids = [t.id for t in tasks]
    for task_id, runner, reason in session.execute(
        sa_select(col(TaskFailure.task_id), col(Runner.name), col(TaskFailure.reason))
        .outerjoin(Runner, col(Runner.id) == col(TaskFailure.runner_id))
        .where(col(TaskFailure.task_id).in_(ids))
        .order_by(col(TaskFailure.id))
    ):
        failures.setdefault(task_id, []).append(f"{runner or 'a runner'}: {reason}")
    return [
        TaskRow(
            id=t.id,
            name=t.name,
            status=t.status,
            frames=list(t.frames),
            frames_done=t.frames_done,
            runner=names.get(t.runner_id) if t.runner_id else None,
            attempts=t.attempts,
            activity=t.activity,
            failure_reason=t.failure_reason,
            failures=failures.get(t.id, []),
            started_at=t.started_at,
            finished_at=t.finished_at,
        )
        for t in tasks
    ]


def frame_cells(
    tasks: list[TaskLine], outputs: list[Output], times: list[FrameTime], names: dict[int, str]
) -> list[FrameCell]:
    """One cell per frame: done once its output is in, else its task's state."""
    done = {o.frame for o in outputs if o.frame is not None}
    seconds = {t.frame: t.seconds for t in times if t.frame is not None}
    cells = []
    for task in tasks:
        runner = names.get(task.runner_id) if task.runner_id else None
        state = {TaskStatus.SOFT_FAILED: "queued"}.get(TaskStatus(task.status), task.status)
        for frame in task.frames:
            cell_state = "done" if frame in done else state
            if cell_state == "completed":
                cell_state = "done"
            cells.append(FrameCell(frame, cell_state, runner, seconds.get(frame)))
    return sorted(cells, key=lambda c: c.frame)


TASKS_SHOWN = 50
NEEDS_A_LOOK = (TaskStatus.ACTIVE, TaskStatus.FAILED, TaskStatus.SOFT_FAILED)


def tasks_worth_showing(tasks: list[TaskLine], limit: int = TASKS_SHOWN) -> list[TaskLine]:
    """What the task table shows of a big job: running and failing tasks, then the others,
    ``limit`` in all and in task order (the page polls; all of them are in the API)."""
    if len(tasks) <= limit:
        return tasks
    first = [t for t in tasks if t.status in NEEDS_A_LOOK][:limit]
    rest = [t for t in tasks if t.status not in NEEDS_A_LOOK][: limit - len(first)]
    return sorted(first + rest, key=lambda t: t.task_order)


def job_detail(
    session: Session,
    job: Job,
    recent: Recent | None = None,
    version: JobVersion | None = None,
) -> JobDetail:
    """What the job page shows, read again only when ``recent`` has nothing for the job's
    current version."""
    if recent is None:
        return _read_detail(session, job)
    version = version if version is not None else job_version(job)
    key = ("detail", job.id, version)
    return recent.kept(key, JobDetail, seconds_for(job), lambda: _read_detail(session, job))


def _read_detail(session: Session, job: Job) -> JobDetail:
    tasks = task_lines(session, job.id or 0)
    outputs = _outputs(session, job.id or 0)
    names = _runner_names(session, tasks)
    times = _times(tasks, outputs)
    frames = [o for o in outputs if o.name.lower().endswith(".exr")]
    last = max(frames, key=lambda o: (o.created_at, o.name)) if frames else None
    recent = [t.seconds for t in times[-RECENT_FRAMES:]]
    return JobDetail(
        summary=summarize(session, job, tasks=tasks, outputs=outputs),
        tasks=_task_rows(session, tasks_worth_showing(tasks), names),
        tasks_total=len(tasks),
        cells=frame_cells(tasks, outputs, times, names),
        outputs=outputs,
        frames=frames,
        # the SDR *.preview.mp4 an encode uploads plays in any browser; the HDR deliverable may not
        previews=[o for o in outputs if o.name.lower().endswith(PREVIEW_SUFFIX)],
        last_frame=last,
        mean_frame_seconds=sum(recent) / len(recent) if recent else None,
    )
