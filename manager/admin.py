"""What admins see and do across the farm: runners, users, all jobs, and the numbers."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from manager.auth.accounts import user_public
from manager.auth.schemas import (
    AdminJobPublic,
    FarmStats,
    RunnerAdminPublic,
    UserAdminPublic,
)
from manager.errors import NotFound
from manager.job_control import release_task
from manager.jobs import jobs_public
from manager.models import ApiKey, Job, Runner, Task, User
from shared.wire import RunnerStatus, TaskStatus


def get_runner(session: Session, runner_id: int) -> Runner:
    runner = session.get(Runner, runner_id)
    if runner is None:
        raise NotFound(f"there is no runner {runner_id}", code="runner_not_found")
    return runner


def _active_tasks(session: Session, runner: Runner) -> list[Task]:
    return list(
        session.exec(
            select(Task).where(Task.runner_id == runner.id, Task.status == TaskStatus.ACTIVE)
        ).all()
    )


def runner_admin_public(session: Session, runner: Runner) -> RunnerAdminPublic:
    return RunnerAdminPublic.model_validate(
        {
            **runner.model_dump(),
            "active_tasks": [t.id for t in _active_tasks(session, runner)],
        }
    )


def list_runners(session: Session) -> list[RunnerAdminPublic]:
    runners = session.exec(select(Runner).order_by(col(Runner.name))).all()
    return [runner_admin_public(session, r) for r in runners]


def set_runner_enabled(session: Session, runner: Runner, enabled: bool) -> None:
    """A disabled runner finishes what it has but claims nothing new."""
    runner.enabled = enabled
    session.add(runner)


def delete_runner(session: Session, runner: Runner) -> list[int]:
    """Forget the runner; its running tasks go back to the queue. Returns their ids.

    A runner whose key still works registers again; revoke the key to keep it out.
    """
    released = []
    for task in _active_tasks(session, runner):
        job = session.get(Job, task.job_id)
        assert job is not None
        release_task(session, task, job, reason=f"runner {runner.name} was deleted by an admin")
        released.append(task.id or 0)
    session.delete(runner)
    session.flush()
    return released


def users_admin(session: Session) -> list[UserAdminPublic]:
    keys = dict(
        session.exec(
            select(ApiKey.user_id, func.count())
            .where(col(ApiKey.revoked_at).is_(None))
            .group_by(col(ApiKey.user_id))
        ).all()
    )
    jobs = dict(session.exec(select(Job.owner_id, func.count()).group_by(col(Job.owner_id))).all())
    return [
        UserAdminPublic(
            **user_public(session, user).model_dump(),
            api_keys=keys.get(user.id, 0),
            jobs=jobs.get(user.id, 0),
        )
        for user in session.exec(select(User).order_by(col(User.id))).all()
    ]


def admin_jobs(
    session: Session, *, status: str | None, owner_id: int | None, limit: int
) -> list[AdminJobPublic]:
    query = (
        select(Job, User.email)
        .join(User, col(User.id) == col(Job.owner_id), isouter=True)
        .order_by(col(Job.id).desc())
        .limit(max(1, min(limit, 1000)))
    )
    if status:
        query = query.where(Job.status == status)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    rows = session.exec(query).all()
    return [
        AdminJobPublic(**public.model_dump(), owner_email=email)
        for public, (_, email) in zip(
            jobs_public(session, [job for job, _ in rows]), rows, strict=True
        )
    ]


def _count_by(session: Session, column: object) -> dict[str, int]:
    rows = session.exec(select(column, func.count()).group_by(column)).all()  # type: ignore[call-overload]
    return {str(value): int(count) for value, count in rows}


def farm_stats(session: Session) -> FarmStats:
    runners = _count_by(session, col(Runner.status))
    runners["total"] = sum(runners.values())
    runners["disabled"] = int(
        session.exec(select(func.count()).select_from(Runner).where(~col(Runner.enabled))).one()
    )
    for status in RunnerStatus:
        runners.setdefault(status.value, 0)
    return FarmStats(
        users=int(session.exec(select(func.count()).select_from(User)).one()),
        admins=int(
            session.exec(select(func.count()).select_from(User).where(col(User.is_admin))).one()
        ),
        api_keys=int(
            session.exec(
                select(func.count()).select_from(ApiKey).where(col(ApiKey.revoked_at).is_(None))
            ).one()
        ),
        runners=runners,
        jobs=_count_by(session, col(Job.status)),
        tasks=_count_by(session, col(Task.status)),
    )
