"""The polled parts of the page are read and rendered once per job version for everybody,
a change to the job shows at once, and what runners change shows within a second."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from manager.models import Task, utcnow
from manager.web import job_page, job_view, jobs_list
from manager.web.recent import RUNNING_SECONDS, Recent
from tests.web.conftest import WebFarm


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(web_farm: WebFarm) -> Clock:
    clock = Clock()
    web_farm.client.app.state.web_recent = Recent(clock=clock)  # type: ignore[attr-defined]
    return clock


def count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_many_polls_of_one_job_read_and_render_it_once_and_a_change_shows_at_once(
    web_farm: WebFarm, rendering_job: int, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    reads = count_calls(monkeypatch, job_view, "_read_detail")
    renders = count_calls(monkeypatch, job_page, "render_text")
    viewers = [web_farm.as_key(key) for key in (web_farm.artist_key, web_farm.admin_key)]
    pages = [
        web_farm.client.get(f"/jobs/{rendering_job}/live", headers=viewers[n % 2]).text
        for n in range(6)
    ]
    assert len(set(pages)) == 1 and "2 / 4 frames" in pages[0]
    assert (len(reads), len(renders)) == (1, 1)
    # another user who may not see the job is still refused, cached or not
    other = web_farm.client.get(
        f"/jobs/{rendering_job}/live", headers=web_farm.as_key(web_farm.other_key)
    )
    assert other.status_code == 404

    web_farm.client.post(f"/jobs/{rendering_job}/actions/pause", headers=viewers[0])
    paused = web_farm.client.get(f"/jobs/{rendering_job}/live", headers=viewers[0]).text
    assert 'id="job-status">pause-requested' in paused or 'id="job-status">paused' in paused
    assert (len(reads), len(renders)) == (2, 2)


def test_what_runners_change_shows_within_a_second(
    web_farm: WebFarm, rendering_job: int, clock: Clock
):
    headers = web_farm.as_key(web_farm.artist_key)
    live = f"/jobs/{rendering_job}/live"
    assert "2 / 4 frames" in web_farm.client.get(live, headers=headers).text
    with web_farm.session() as session:  # a runner's progress: the task changes, not the job
        task = session.get(Task, _task_of(web_farm, rendering_job, "active"))
        assert task is not None
        task.frames_done, task.activity, task.updated_at = 1, "rendering frame 3", utcnow()
        session.add(task)
        session.commit()
    clock.now += RUNNING_SECONDS / 2
    assert "2 / 4 frames" in web_farm.client.get(live, headers=headers).text
    clock.now += RUNNING_SECONDS / 2
    fresh = web_farm.client.get(live, headers=headers).text
    assert "3 / 4 frames" in fresh and "rendering frame 3" in fresh


def test_the_jobs_list_rows_are_rendered_once_for_everybody_polling_them(
    web_farm: WebFarm, rendering_job: int, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    renders = count_calls(monkeypatch, jobs_list, "render_text")
    rows = "/jobs/rows?status=&scope=all"
    admin = web_farm.as_key(web_farm.admin_key)
    first = web_farm.client.get(rows, headers=admin).text
    assert "shot 010" in first and "just now" in first
    assert web_farm.client.get(rows, headers=admin).text == first
    assert len(renders) == 1
    # what one viewer ticked is part of what is kept, and the artist sees only their jobs
    ticked = web_farm.client.get(f"{rows}&job_id={rendering_job}", headers=admin).text
    assert "checked" in ticked and "checked" not in first
    other = web_farm.client.get(rows, headers=web_farm.as_key(web_farm.other_key)).text
    assert "shot 010" not in other
    assert len(renders) == 3
    clock.now += RUNNING_SECONDS  # the job is active: runners may have changed its tasks
    web_farm.client.get(rows, headers=admin)
    assert len(renders) == 4


def test_recent_keeps_values_for_their_time_and_drops_the_oldest_beyond_its_size():
    clock = Clock()
    recent = Recent(size=2, clock=clock)
    recent.put("a", "A", 1.0)
    recent.put("b", "B", 5.0)
    assert recent.get("a") == "A"  # (and "a" is now the most recently used)
    recent.put("c", "C", 5.0)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == ("A", None, "C")
    clock.now += 1.0
    assert recent.get("a") is None and recent.get("c") == "C"


def _task_of(web_farm: WebFarm, job_id: int, status: str) -> int:
    with web_farm.session() as session:
        task = session.exec(select(Task).where(Task.job_id == job_id, Task.status == status)).one()
        assert task.id is not None
        return task.id
