"""The pages as HTML: who sees what, what each page shows, and the actions behind its buttons."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from sqlmodel import col, select

from manager.auth.passwords import set_password
from manager.auth.providers import save_oidc_provider
from manager.farm_settings import set_setting
from manager.models import ApiKey, Job, JobBlocklist, Runner, User
from manager.storage import Storage
from manager.users import get_user_by_email
from manager.web.job_view import summarize, summarize_jobs
from tests.manager.factories import make_job
from tests.web.conftest import WebFarm

# The pages' reads are plain selects; the event stream, whose queries differ, runs on both.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_signed_out_pages_send_to_sign_in_and_htmx_gets_a_full_redirect(web_farm: WebFarm):
    page = web_farm.client.get("/jobs/7", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/jobs/7"
    poll = web_farm.client.get(
        "/jobs/rows",
        headers={"HX-Request": "true", "HX-Current-URL": "http://farm/jobs?status=failed"},
    )
    assert poll.status_code == 204
    assert poll.headers["HX-Redirect"] == "/signin?next=/jobs"  # the page, not the fragment
    assert "framefarm manager config enable localauth" in web_farm.client.get("/signin").text
    with web_farm.session() as session:
        set_setting(session, "localauth", "on")
        session.commit()
    signin = web_farm.client.get("/signin?next=//evil.example/")
    assert signin.status_code == 200
    assert '<input type="hidden" name="next" value="/">' in signin.text  # only this farm's paths


def test_jobs_list_shows_progress_eta_and_runners(web_farm: WebFarm, rendering_job: int):
    page = web_farm.client.get("/jobs", headers=web_farm.as_key(web_farm.artist_key))
    assert page.status_code == 200
    row = re.search(rf'<tr id="job-{rendering_job}".*?</tr>', page.text, re.S)
    assert row is not None, page.text
    assert "shot 010" in row.group(0)
    assert 'aria-valuenow="2"' in row.group(0) and 'aria-valuemax="4"' in row.group(0)
    assert '<td class="num">1</td>' in row.group(0)  # one runner working
    assert '<td class="eta">30 s</td>' in row.group(0)
    other = web_farm.client.get("/jobs", headers=web_farm.as_key(web_farm.other_key))
    assert "shot 010" not in other.text


def test_job_page_shows_grid_tasks_log_preview_and_outputs(web_farm: WebFarm, rendering_job: int):
    page = web_farm.client.get(
        f"/jobs/{rendering_job}", headers=web_farm.as_key(web_farm.artist_key)
    )
    assert page.status_code == 200
    cells = re.findall(r'<li class="cell (\w+)" id="cell-(\d+)"', page.text)
    assert cells == [("done", "1"), ("done", "2"), ("active", "3"), ("queued", "4")]
    assert 'aria-label="frame 2, done, on node-01, 20.0 s"' in page.text
    assert 'aria-label="frame 3, active, on node-01"' in page.text
    assert '<div class="value" id="job-eta">30 s</div>' in page.text
    assert "line 500" in page.text and "line 300" not in page.text  # the tail, 200 lines
    assert f'src="/jobs/{rendering_job}/preview/frame_000002.exr?width=960"' in page.text
    assert f'href="/api/jobs/{rendering_job}/outputs/frame_000001.exr"' in page.text
    assert f'href="/jobs/{rendering_job}/frames.zip"' in page.text
    for action in ("pause", "cancel", "delete"):
        assert f"/jobs/{rendering_job}/actions/{action}" in page.text
    hidden = web_farm.client.get(
        f"/jobs/{rendering_job}", headers=web_farm.as_key(web_farm.other_key)
    )
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "job_not_found"


def test_preview_is_a_png_over_a_checkerboard(web_farm: WebFarm, rendering_job: int):
    from PIL import Image

    answer = web_farm.client.get(
        f"/jobs/{rendering_job}/preview/frame_000001.exr",
        headers=web_farm.as_key(web_farm.artist_key),
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(answer.content)).convert("RGB")
    assert image.size == (32, 16)
    # 0.18 linear is sRGB 118 on the opaque half; the transparent half shows both squares
    assert image.getpixel((3, 3)) == (118, 118, 118)
    assert {image.getpixel((20, 3)), image.getpixel((28, 3))} == {(204, 204, 204), (140, 140, 140)}
    cached = list((storage_of(web_farm).job_dir(rendering_job) / "previews").iterdir())
    assert [p.suffix for p in cached] == [".png"]
    made_at = cached[0].stat().st_mtime_ns
    again = web_farm.client.get(
        f"/jobs/{rendering_job}/preview/frame_000001.exr",
        headers=web_farm.as_key(web_farm.artist_key),
    )
    assert again.content == answer.content and cached[0].stat().st_mtime_ns == made_at
    jpeg = web_farm.client.get(
        f"/jobs/{rendering_job}/preview/frame_000001.exr?format=jpeg&width=16",
        headers=web_farm.as_key(web_farm.artist_key),
    )
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (16, 8)
    missing = web_farm.client.get(
        f"/jobs/{rendering_job}/preview/frame_000009.exr",
        headers=web_farm.as_key(web_farm.artist_key),
    )
    assert missing.status_code == 404 and missing.json()["code"] == "output_not_found"


def storage_of(web_farm: WebFarm) -> Storage:
    storage: Storage = web_farm.client.app.state.storage  # type: ignore[attr-defined]
    return storage


def test_zip_holds_every_frame_byte_for_byte(web_farm: WebFarm, rendering_job: int):
    storage = storage_of(web_farm)
    answer = web_farm.client.get(
        f"/jobs/{rendering_job}/frames.zip", headers=web_farm.as_key(web_farm.artist_key)
    )
    assert answer.status_code == 200
    assert 'filename="job-' in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["frame_000001.exr", "frame_000002.exr"]
        for name in archive.namelist():
            assert archive.read(name) == storage.output_path(rendering_job, name).read_bytes()


def test_actions_change_the_job_and_say_so(web_farm: WebFarm, rendering_job: int):
    headers = web_farm.as_key(web_farm.artist_key)
    paused = web_farm.client.post(f"/jobs/{rendering_job}/actions/pause", headers=headers)
    assert paused.status_code == 200 and "Paused" in paused.text
    assert paused.headers["HX-Trigger"] == "job-changed"
    priority = web_farm.client.post(
        f"/jobs/{rendering_job}/priority", data={"priority": "80"}, headers=headers
    )
    assert "is now 80" in priority.text
    bad = web_farm.client.post(
        f"/jobs/{rendering_job}/priority", data={"priority": "900"}, headers=headers
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"
    unknown = web_farm.client.post(f"/jobs/{rendering_job}/actions/explode", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_action"
    with web_farm.session() as session:
        job = session.get(Job, rendering_job)
        assert job is not None and job.priority == 80
        assert job.status in ("paused", "pause-requested")
    deleted = web_farm.client.post(f"/jobs/{rendering_job}/actions/delete", headers=headers)
    assert deleted.status_code == 204 and deleted.headers["HX-Redirect"] == "/jobs"
    with web_farm.session() as session:
        assert session.get(Job, rendering_job) is None


def test_bulk_action_reports_each_job(web_farm: WebFarm, rendering_job: int):
    answer = web_farm.client.post(
        "/jobs/bulk",
        data={"action": "cancel", "job_id": [str(rendering_job), "999999"], "priority": ""},
        headers=web_farm.as_key(web_farm.artist_key),
    )
    assert "1 job(s) done" in answer.text and "job 999999: there is no job" in answer.text
    headers = web_farm.as_key(web_farm.artist_key)
    ticked = {"job_id": [str(rendering_job)]}
    for priority in ("", "high", "101"):
        refused = web_farm.client.post(
            "/jobs/bulk",
            data={**ticked, "action": "priority", "priority": priority},
            headers=headers,
        )
        assert "Enter a priority between 0 and 100" in refused.text, priority
    raised = web_farm.client.post(
        "/jobs/bulk", data={**ticked, "action": "priority", "priority": "70"}, headers=headers
    )
    assert "Priority: 1 job(s) done." in raised.text
    with web_farm.session() as session:
        job = session.get(Job, rendering_job)
        assert job is not None and job.priority == 70


def test_runners_page_and_admin_pages(web_farm: WebFarm, rendering_job: int):
    artist = web_farm.as_key(web_farm.artist_key)
    admin = web_farm.as_key(web_farm.admin_key)
    runners = web_farm.client.get("/runners", headers=artist)
    for shown in ("node-01", "5.0.1 (bpy)", "shot 010", '<span class="tag">gpu</span>'):
        assert shown in runners.text
    assert "/disable" not in runners.text  # only admins get the buttons
    assert web_farm.client.get("/admin/keys", headers=artist).status_code == 403
    keys = web_farm.client.get("/admin/keys", headers=admin)
    assert keys.status_code == 200 and "Create a key" in keys.text
    made = web_farm.client.post(
        "/admin/keys", data={"name": "render nodes", "scope": "runner"}, headers=admin
    )
    secret = re.search(r'<code id="new-key-secret"[^>]*>(ff_[^<]+)</code>', made.text)
    assert secret is not None
    assert web_farm.client.get("/admin/keys/rows", headers=admin).text.count(secret.group(1)) == 0
    settings = web_farm.client.get("/admin/settings", headers=admin)
    assert "frames-per-render-task" in settings.text
    changed = web_farm.client.post(
        "/admin/settings/frames-per-render-task", data={"value": "zero"}, headers=admin
    )
    assert "frames-per-render-task:" in changed.text and 'class="flash error"' in changed.text


def test_browsers_get_error_pages_and_scripts_keep_json(web_farm: WebFarm, rendering_job: int):
    browser = {**web_farm.as_key(web_farm.other_key), "Accept": "text/html,*/*;q=0.8"}
    hidden = web_farm.client.get(f"/jobs/{rendering_job}", headers=browser)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("text/html")
    assert f"There is no job {rendering_job}." in hidden.text and 'href="/jobs"' in hidden.text
    admin_only = web_farm.client.get("/admin/users", headers=browser)
    assert admin_only.status_code == 403 and "Only admins may see this page" in admin_only.text
    script = web_farm.client.get("/admin/users", headers=web_farm.as_key(web_farm.other_key))
    assert script.json()["code"] == "admin_only"


def test_sign_in_offers_each_provider(web_farm: WebFarm):
    with web_farm.session() as session:
        save_oidc_provider(
            session,
            web_farm.client.app.state.keyring,  # type: ignore[attr-defined]
            "studio",
            discovery_url="https://sso.studio.example/realms/studio",
            client_id="farm",
            client_secret="a client secret",
            label="Studio SSO",
        )
        session.commit()
    page = web_farm.client.get("/signin?next=/jobs/3")
    assert 'href="/api/auth/studio/login?next=/jobs/3">Continue with Studio SSO</a>' in page.text
    assert "a client secret" not in page.text


def test_admins_choose_between_their_jobs_and_everyones(web_farm: WebFarm, rendering_job: int):
    admin = web_farm.as_key(web_farm.admin_key)
    mine = web_farm.client.get("/jobs", headers=admin)
    assert "shot 010" not in mine.text
    everyone = web_farm.client.get("/jobs?scope=all", headers=admin)
    assert "shot 010" in everyone.text and '<th scope="col">Owner</th>' in everyone.text
    assert "<td>artist@example.com</td>" in everyone.text
    failed_only = web_farm.client.get("/jobs?scope=all&status=failed", headers=admin)
    assert "shot 010" not in failed_only.text
    artist = web_farm.client.get("/jobs?scope=all", headers=web_farm.as_key(web_farm.artist_key))
    assert "Owner</th>" not in artist.text  # not an admin: only their own jobs, no owners


def test_admins_run_runners_users_and_keys_from_the_pages(web_farm: WebFarm, rendering_job: int):
    admin = web_farm.as_key(web_farm.admin_key)
    with web_farm.session() as session:
        runner = session.exec(select(Runner).where(Runner.name == "node-01")).one()
        artist = session.exec(select(User).where(User.email == "artist@example.com")).one()
        key = session.exec(select(ApiKey).where(ApiKey.name == "u")).one()
    disabled = web_farm.client.post(f"/runners/{runner.id}/disable", headers=admin)
    assert "finishes its current task" in disabled.text
    assert "disabled" in web_farm.client.get("/runners/rows", headers=admin).text
    form = web_farm.client.get(f"/runners/{runner.id}/tags", headers=admin)
    assert 'value="gpu"' in form.text
    tagged = web_farm.client.post(
        f"/runners/{runner.id}/tags", data={"tags": "gpu, studio-a,  ,gpu"}, headers=admin
    )
    assert "node-01 now has gpu, studio-a." in tagged.text
    made = web_farm.client.post(
        f"/admin/users/{artist.id}/admin", data={"make": "true"}, headers=admin
    )
    assert "artist@example.com is now an admin." in made.text
    revoked = web_farm.client.post(f"/admin/keys/{key.id}/revoke", headers=admin)
    assert "is revoked" in revoked.text
    with web_farm.session() as session:
        runner_after = session.get(Runner, runner.id)
        assert runner_after is not None
        assert runner_after.enabled is False and runner_after.tags == ["gpu", "studio-a"]
        artist_after = session.get(User, artist.id)
        assert artist_after is not None and artist_after.is_admin
        key_after = session.get(ApiKey, key.id)
        assert key_after is not None and key_after.revoked_at is not None
    gone = web_farm.client.get("/jobs", headers=web_farm.as_key(web_farm.artist_key))
    assert gone.status_code == 401 and gone.json()["code"] == "invalid_api_key"


def test_a_file_that_is_not_a_blend_says_so_before_submitting(web_farm: WebFarm):
    answer = web_farm.client.post(
        "/jobs/new/inspect",
        files={"file": ("notes.blend", b"not a blend at all")},
        headers=web_farm.as_key(web_farm.artist_key),
    )
    assert answer.status_code == 200
    assert "could not be read" in answer.text
    assert 'data-job-type="simple-blender-render"' in answer.text  # the form is still there


def test_the_sign_in_form_works_without_scripts(web_farm: WebFarm, rendering_job: int):
    with web_farm.session() as session:
        set_setting(session, "localauth", "on")
        set_password(session, get_user_by_email(session, "artist@example.com"), "a long password")
        session.commit()
    form = {"email": "artist@example.com", "password": "not the password", "next": "/jobs/1"}
    wrong = web_farm.client.post("/signin", data=form, follow_redirects=False)
    assert wrong.status_code == 401
    assert "Wrong email or password" in wrong.text and 'value="artist@example.com"' in wrong.text
    assert "framefarm_session" not in wrong.cookies
    right = web_farm.client.post(
        "/signin", data={**form, "password": "a long password"}, follow_redirects=False
    )
    assert right.status_code == 303 and right.headers["location"] == "/jobs/1"
    page = web_farm.client.get(f"/jobs/{rendering_job}")  # the cookie the form set
    assert page.status_code == 200 and "shot 010" in page.text
    without_csrf = web_farm.client.post(f"/jobs/{rendering_job}/actions/pause")
    assert without_csrf.status_code == 403 and without_csrf.json()["code"] == "csrf_failed"
    csrf = {"X-CSRF-Token": web_farm.client.cookies["framefarm_csrf"]}
    paused = web_farm.client.post(f"/jobs/{rendering_job}/actions/pause", headers=csrf)
    assert paused.status_code == 200 and "Paused" in paused.text


def test_static_files_are_served_and_nothing_else(web_farm: WebFarm):
    htmx = web_farm.client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and htmx.headers["content-type"].startswith("text/javascript")
    assert web_farm.client.get("/static/farm.css").headers["content-type"].startswith("text/css")
    for sneaky in ("/static/..%2F__init__.py", "/static/.hidden", "/static/nothing.js"):
        assert web_farm.client.get(sneaky).status_code == 404, sneaky


def test_the_polled_list_summarizes_jobs_as_the_job_page_does(
    web_farm: WebFarm, rendering_job: int
):
    with web_farm.session() as session:
        runner = session.exec(select(Runner)).one()
        for n in range(3):
            job, tasks = make_job(session, tasks=2, name=f"extra {n}", pins=["node-01"])
            job.status = ("completed", "paused", "queued")[n]
            session.add(JobBlocklist(job_id=job.id, runner_id=runner.id, reason="failed 3"))
        session.commit()
        jobs = list(session.exec(select(Job).order_by(col(Job.id))))
        one_by_one = [summarize(session, job) for job in jobs]
        batched = summarize_jobs(session, jobs)
    assert [s.job for s in batched] == [s.job for s in one_by_one]
    assert [(s.owner_email, s.runners_working, s.eta_seconds) for s in batched] == [
        (s.owner_email, s.runners_working, s.eta_seconds) for s in one_by_one
    ]
    assert batched[0].eta_seconds == 30.0 and batched[1].job.blocklist[0].reason == "failed 3"


def test_sign_up_when_the_farm_takes_registrations(web_farm: WebFarm):
    assert "Create an account" not in web_farm.client.get("/signin").text
    with web_farm.session() as session:
        set_setting(session, "localauth", "on")
        set_setting(session, "registration", "on")
        session.commit()
    assert "Create an account" in web_farm.client.get("/signin").text
    form = {"email": "new@example.com", "name": "New Artist", "next": "/jobs/new"}
    weak = web_farm.client.post("/signin/register", data={**form, "password": "short"})
    assert weak.status_code == 422 and 'id="signup-error"' in weak.text
    assert '<details class="signup" open>' in weak.text
    made = web_farm.client.post(
        "/signin/register", data={**form, "password": "a long enough password"}
    )
    assert made.status_code == 200 and made.url.path == "/jobs/new"  # followed, signed in
    assert "New Artist" in made.text and "Choose the .blend to render" in made.text


def test_the_jobs_list_pages_by_fifty_newest_first(web_farm: WebFarm, rendering_job: int):
    with web_farm.session() as session:
        artist = get_user_by_email(session, "artist@example.com")
        assert artist is not None
        for n in range(60):
            job, _ = make_job(session, tasks=1, name=f"batch {n:02d}")
            job.owner_id = artist.id
            session.add(job)
        session.commit()
    artist_auth = web_farm.as_key(web_farm.artist_key)
    first = web_farm.client.get("/jobs", headers=artist_auth)
    names = list(dict.fromkeys(re.findall(r"batch (\d\d)", first.text)))  # (named twice a row)
    assert names == [f"{n:02d}" for n in range(59, 9, -1)]  # the 50 newest
    assert "shot 010" not in first.text
    assert 'rel="next" href="/jobs?status=&amp;scope=mine&amp;page=2"' in first.text
    assert 'rel="prev"' not in first.text
    assert 'hx-get="/jobs/rows?status=&scope=mine&page=1"' in first.text
    second = web_farm.client.get("/jobs?page=2", headers=artist_auth)
    older = list(dict.fromkeys(re.findall(r"batch (\d\d)", second.text)))
    assert older == [f"{n:02d}" for n in range(9, -1, -1)]
    assert "shot 010" in second.text  # the oldest, on the last page
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    rows = web_farm.client.get("/jobs/rows?page=2", headers=artist_auth)
    assert rows.status_code == 200 and "shot 010" in rows.text and "batch 10" not in rows.text
    assert web_farm.client.get("/jobs?page=0", headers=artist_auth).status_code == 422
