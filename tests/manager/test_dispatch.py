"""A claim attempt: a woken runner that gets nothing passes the wake-up on only when useful."""

from __future__ import annotations

from sqlalchemy import Engine

from manager.db import session_scope
from manager.dispatch import attempt_claim
from manager.models import ApiKey
from tests.manager.factories import make_job
from tests.manager.test_scheduler import engine, runners  # noqa: F401

KEY = ApiKey(name="nodes", prefix="ff_test", key_hash="-", scope="runner")


def test_a_woken_runner_passes_on_only_work_it_may_not_take(engine: Engine):  # noqa: F811
    (plain,) = runners(engine, "plain")
    _, task, others_may = attempt_claim(engine, plain.id, KEY, None, 30, True)  # type: ignore[arg-type]
    assert task is None and not others_may  # nothing runnable: waking others is wasted

    with session_scope(engine) as session:
        make_job(session, tasks=1, tag="gpu")
    _, task, others_may = attempt_claim(engine, plain.id, KEY, None, 30, True)  # type: ignore[arg-type]
    assert task is None and others_may  # a runner with the tag may take it
    _, task, others_may = attempt_claim(engine, plain.id, KEY, None, 30, False)  # type: ignore[arg-type]
    assert task is None and not others_may  # not woken: nothing to pass on

    (tagged,) = runners(engine, "tagged", tags=["gpu"])
    _, task, _ = attempt_claim(engine, tagged.id, KEY, None, 30, True)  # type: ignore[arg-type]
    assert task is not None and task.job.name == "job"
