"""The web page in a real browser (Debian chromium) against a real manager and a real runner.

Sign in, submit a .blend through the form, watch it complete live, see the preview, download
an EXR and the zip, cancel another job, and as an admin create an API key. Every page is
saved as a screenshot ($FRAMEFARM_SCREENSHOTS, else the test's temp folder).
"""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import OpenEXR
import pytest
from playwright.sync_api import Browser, Page, expect

from manager.auth.passwords import set_password
from manager.db import BEGIN_MODE, make_engine, session_scope
from manager.farm_settings import set_setting
from manager.settings import database_url
from manager.users import create_user, get_user_by_email
from runner.blender import BlenderBackend
from tests.e2e.conftest import LiveFarm
from tests.web.contrast import low_contrast

pytestmark = [pytest.mark.e2e, pytest.mark.blender]

ARTIST = ("artist@example.com", "artist-password-1")
ADMIN = ("wrangler@example.com", "wrangler-password-1")
LIVE_WITHIN_S = 2.0  # the bound for a change to show without a reload (pages poll 1.5 s)
POLL_SLACK_S = 0.5  # the test's own 50 ms API polling and a busy 2-core machine


def prepare_accounts(farm: LiveFarm) -> None:
    engine = make_engine(database_url(str(farm.root / "framefarm.db")))
    # The manager and its runner write meanwhile: take the write lock up front, as the
    # manager does, so reading and then writing here cannot fail on a stale snapshot.
    with session_scope(engine.execution_options(**{BEGIN_MODE: "IMMEDIATE"})) as session:
        set_setting(session, "localauth", "on")
        set_password(session, get_user_by_email(session, ARTIST[0]), ARTIST[1])
        set_password(session, create_user(session, email=ADMIN[0], is_admin=True), ADMIN[1])
    engine.dispose()


def sign_in(page: Page, url: str, account: tuple[str, str], shots: Path | None = None) -> None:
    page.goto(f"{url}/jobs")
    expect(page).to_have_url(f"{url}/signin?next=/jobs")
    expect(page.get_by_label("Email")).to_be_focused()  # ready to type
    page.get_by_label("Email").fill(account[0])
    page.get_by_label("Password").fill(account[1])
    if shots is not None:
        page.screenshot(path=shots / "01-sign-in.png")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def wait_for_status(client: httpx.Client, job_id: int, wanted: str, timeout: float) -> float:
    """The moment the API first says the job has ``wanted`` status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/api/jobs/{job_id}").json()["status"] == wanted:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {wanted} in {timeout} s")


def test_render_wrangling_in_the_browser(
    live_farm: LiveFarm,
    bpy_backend: BlenderBackend,
    scene_bpy: Path,
    browser: Browser,
    screenshots: Path,
    tmp_path: Path,
):
    prepare_accounts(live_farm)
    live_farm.start_runner(bpy_backend, "node-web")  # it starts up while the browser signs in
    url = live_farm.url
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, url, ARTIST, screenshots)

    # submit through the form: the page reads the .blend's settings without Blender
    page.get_by_role("link", name="Submit", exact=True).click()
    page.get_by_label("Choose the .blend to render").set_input_files(scene_bpy)
    expect(page.locator("#blend-info")).to_contain_text("64 × 64")
    expect(page.get_by_role("textbox", name="Frames", exact=True)).to_have_value("1-4")
    page.get_by_label("Job name").fill("browser shot")
    page.get_by_role("spinbutton", name="Chunk size").fill("2")
    page.get_by_role("combobox", name="Deliverable").select_option("EXR_264_MP4")
    page.screenshot(path=screenshots / "02-submit.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    page.get_by_role("button", name="Submit job").click()
    expect(page).to_have_url(re.compile(rf"{url}/jobs/\d+$"), timeout=20_000)
    job_id = int(page.url.rsplit("/", 1)[1])

    # watch it complete live: the status changes without the page loading again
    page.evaluate("window.loadedOnce = true")
    with live_farm.client() as api:
        done_at = wait_for_status(api, job_id, "completed", timeout=120)
    expect(page.locator("#job-status")).to_have_text(
        "completed", timeout=(LIVE_WITHIN_S + POLL_SLACK_S) * 1000
    )
    shown_after = time.monotonic() - done_at
    print(f"the page showed the completed job {shown_after:.2f} s after the API did")
    assert shown_after <= LIVE_WITHIN_S + POLL_SLACK_S, shown_after
    assert page.evaluate("window.loadedOnce") is True, "the page reloaded"
    expect(page.locator(".cell.done")).to_have_count(4)
    preview = page.locator("img#preview")
    expect(preview).to_be_visible()
    assert preview.evaluate("img => img.complete && img.naturalWidth") == 64
    # the encode uploaded an HDR video and an SDR preview, which plays in the page
    video = page.locator("video")
    expect(video).to_have_count(1)
    video.evaluate("v => v.load()")
    page.wait_for_function("document.querySelector('video').videoWidth === 64", timeout=10_000)
    # the log of a render task, as the runner streamed it
    page.get_by_role("button", name="Show the log of render-1,2").click()
    expect(page.locator("#log-title")).to_contain_text("render-1,2")
    expect(page.locator("pre.log")).not_to_be_empty()
    # hovering a frame (or focusing it) tells who rendered it and how long it took
    page.locator("#cell-2").hover()
    tip = page.locator("#cell-2").evaluate("c => getComputedStyle(c, '::after').content")
    assert re.fullmatch(r'"frame 2, done, on node-web, \d+\.\d s"', tip), tip
    page.screenshot(path=screenshots / "03-job-completed.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)

    # one EXR, then every frame as a zip
    with page.expect_download() as exr_download:
        page.get_by_role("link", name="frame_000001.exr").click()
    exr_path = tmp_path / "frame_000001.exr"
    exr_download.value.save_as(exr_path)
    channels = OpenEXR.File(str(exr_path), separate_channels=True).channels()
    assert sorted(channels) == ["A", "B", "G", "R"]
    assert channels["R"].pixels.shape == (64, 64) and np.abs(channels["R"].pixels).max() > 0
    with page.expect_download() as zip_download:
        page.get_by_role("link", name="Download all frames (.zip)").click()
    zip_path = tmp_path / "frames.zip"
    zip_download.value.save_as(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == [f"frame_{f:06d}.exr" for f in (1, 2, 3, 4)]
        assert archive.read("frame_000001.exr") == exr_path.read_bytes()

    # cancel another job: one tagged for runners that do not exist waits in the queue
    with live_farm.client() as api, scene_bpy.open("rb") as blend:
        waiting = api.post(
            "/api/jobs",
            files={"file": ("scene.blend", blend)},
            data={"frames": "1-4", "name": "waits for a gpu", "tag": "gpu"},
        ).json()
    page.goto(f"{url}/jobs")
    expect(page.locator(f"#job-{waiting['id']}")).to_contain_text("queued")
    # keyboard: the first Tab offers to skip the navigation, the next ones walk it in order
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="framefarm home")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Jobs", exact=True)).to_be_focused()
    page.screenshot(path=screenshots / "04-jobs.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    page.get_by_role("link", name="waits for a gpu").click()
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("canceled", timeout=5000)
    expect(page.locator("#flash")).to_contain_text("Canceled")
    page.screenshot(path=screenshots / "05-job-canceled.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    # a bulk action from the list: delete the canceled job (the page asks first)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    asked: list[str] = []
    page.once("dialog", lambda dialog: asked.append(dialog.message))
    page.get_by_label("Select job waits for a gpu").check()
    page.get_by_label("With ticked jobs").select_option("delete")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#flash")).to_contain_text("Delete: 1 job(s) done.")
    expect(page.locator(f"#job-{waiting['id']}")).to_have_count(0)
    expect(page.locator(f"#job-{job_id}")).to_contain_text("completed")
    assert asked == ["Delete 1 job(s)? Their frames go too."]
    page.get_by_role("link", name="Runners").click()
    expect(page.locator("#runner-rows")).to_contain_text("node-web")
    page.screenshot(path=screenshots / "06-runners.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{url}/signin")

    # an admin makes an API key; its secret is shown once, and it works
    sign_in(page, url, ADMIN)
    page.get_by_role("link", name="Admin").click()
    page.screenshot(path=screenshots / "07-admin-users.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("wrangler laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret")
    expect(secret).to_contain_text("ff_")
    expect(page.locator("#key-rows")).to_contain_text("wrangler laptop")
    page.screenshot(path=screenshots / "08-admin-key-created.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    me = httpx.get(
        f"{url}/api/auth/me", headers={"Authorization": f"Bearer {secret.inner_text().strip()}"}
    )
    assert me.status_code == 200 and me.json()["user"]["email"] == ADMIN[0]
    page.reload()
    expect(page.locator("#new-key-secret")).to_have_count(0)  # shown once
    page.get_by_role("link", name="Settings").click()
    page.screenshot(path=screenshots / "09-admin-settings.png", full_page=True)
    assert not low_contrast(page), low_contrast(page)
    context.close()
