"""Runs inside real Blender: install the built add-on, build the textured project, submit.

Argument: a JSON file with ``zip``, ``kind`` (``extension`` or ``legacy``), ``manager_url``,
``api_key``, ``project`` and ``cached_project`` (folders) and ``hide`` (a site-packages
folder whose blender-asset-tracer and zstandard must not be used, so the add-on's own
copies are). Prints one ``@result {json}`` line per step, never the API key; the test
reads them. Blender 3.4 and bpy 5.0.
"""

import hashlib
import importlib.machinery
import json
import os
import shutil
import sys
import time
import traceback
import types

# isort: off
import bpy  # first: the bpy module puts addon_utils on the path
import addon_utils
# isort: on

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import draw_recorder  # noqa: E402
import textured_scene  # noqa: E402

with open(sys.argv[-1]) as config_file:
    CONFIG = json.load(config_file)


class HideSitePackages:
    """Finds blender-asset-tracer and zstandard anywhere but in the hidden folder."""

    names = ("blender_asset_tracer", "zstandard")

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        hidden = os.path.realpath(CONFIG["hide"])
        search = [p for p in sys.path if os.path.realpath(p) != hidden]
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None:
            raise ModuleNotFoundError(f"{name} is not installed outside {hidden}", name=name)
        return spec


def result(step, **data):
    print("@result " + json.dumps({"step": step, **data}), flush=True)


def install():
    if CONFIG["kind"] == "extension":
        bpy.ops.extensions.package_install_files(
            filepath=CONFIG["zip"], repo="user_default", enable_on_install=True
        )
    else:
        bpy.ops.preferences.addon_install(filepath=CONFIG["zip"])
        addon_utils.enable("framefarm", default_set=True, handle_error=None)
    modules = [addon.module for addon in bpy.context.preferences.addons]
    package = next(name for name in modules if name.endswith("framefarm"))
    return package, sys.modules[package]


def call(operator, **kwargs):
    """Run an operator; its ERROR report becomes RuntimeError in background mode."""
    try:
        return {"outcome": sorted(operator(**kwargs)), "error": ""}
    except RuntimeError as error:
        return {"outcome": ["ERROR"], "error": str(error)}


def submit(addon, step):
    was_dirty = bpy.data.is_dirty
    called = call(bpy.ops.framefarm.submit_job)
    state = addon.preferences.state()
    flow = state.flow
    result(
        step,
        **called,
        was_dirty=was_dirty,
        job_id=(state.last_job or {}).get("id") if flow and flow.job else None,
        phase=flow.phase.value if flow else None,
        uploaded_files=flow.uploaded_files if flow else [],
        uploaded_bytes=flow.uploaded_bytes if flow else 0,
        manifest=sorted(flow.hashes) if flow else [],
        warnings=state.warnings,
        message=state.message,
    )
    state.last_job = None


def modal_probe(addon, reports):
    """The submit operator's own methods, bound to a stand-in (no window in background)."""
    cls = addon.operators.FRAMEFARM_OT_submit_job
    probe = types.SimpleNamespace(_timer=None)
    probe.report = lambda kind, text: reports.append([sorted(kind)[0], text])
    for name in ("start", "finish", "modal"):
        setattr(probe, name, types.MethodType(getattr(cls, name), probe))
    return probe


def modal_steps(addon):
    """Step the modal operator with timer events to the end, then cancel one with ESC."""
    context, reports = bpy.context, []
    probe = modal_probe(addon, reports)
    addon.operators.STEP_SECONDS = 0.0  # one step per tick, whatever this machine's speed
    probe.start(context)
    ticks, outcome = 0, {"PASS_THROUGH"}
    while outcome == {"PASS_THROUGH"} and ticks < 10_000:
        outcome = probe.modal(context, types.SimpleNamespace(type="TIMER"))
        ticks += 1
    result("modal", outcome=sorted(outcome), ticks=ticks, reports=reports)

    reports.clear()
    probe.start(context)  # ESC before the first tick: a tiny scene fits in one tick
    outcome = probe.modal(context, types.SimpleNamespace(type="ESC"))
    state = addon.preferences.state()
    if state.flow._pack_thread is not None:
        state.flow._pack_thread.join()  # canceled while packing: it cleans up when it ends
    folder = os.path.dirname(bpy.data.filepath)
    leftovers = [n for n in os.listdir(folder) if n.startswith(".framefarm")]
    leftovers += [str(state.flow.request.staging)] if state.flow.request.staging.exists() else []
    result(
        "modal_esc",
        outcome=sorted(outcome),
        reports=reports,
        phase=state.flow.phase.value,
        leftovers=leftovers,
    )


def timer_refresh(addon):
    """Call the "My jobs" timer as Blender would, with the panel just drawn."""
    state = addon.preferences.state()
    state.recent_jobs, state.jobs_fetched_at = [], 0.0
    state.jobs_panel_seen_at = time.monotonic()
    interval = addon.blender_ui.refresh_recent_jobs()
    if state._jobs_thread is not None:
        state._jobs_thread.join(30)
    fetched = len(state.recent_jobs)
    addon.blender_ui.refresh_recent_jobs()  # redraws once for the new list
    result("timer", interval=interval, fetched=fetched, updated_after=state.jobs_updated)


def config_file(*names):
    return os.path.join(bpy.utils.user_resource("CONFIG"), *names)


def key_file_facts():
    """The credentials file as the artist's disk has it: where, its mode, whether it holds
    the key (the key itself is never printed)."""
    path = config_file("framefarm", "credentials.json")
    if not os.path.exists(path):
        return {"path": path, "exists": False}
    with open(path) as f:
        holds_key = json.load(f).get("api_key") == CONFIG["api_key"]
    return {
        "path": path,
        "exists": True,
        "mode": oct(os.stat(path).st_mode & 0o777),
        "holds_key": holds_key,
    }


def saved_userpref():
    """Save the preferences as Blender does on quit; what userpref.blend's bytes hold."""
    bpy.ops.wm.save_userpref()
    with open(config_file("userpref.blend"), "rb") as f:
        data = f.read()
    return {
        "key_saved": CONFIG["api_key"].encode() in data,
        "url_saved": CONFIG["manager_url"].encode() in data,  # the bytes are readable
    }


def migration(package, addon):
    """A key that versions up to 0.2 saved in the ``api_key`` preference moves to the
    credentials file when the add-on registers (as when Blender starts), then is gone."""
    result("forget", **call(bpy.ops.framefarm.forget_api_key), **key_file_facts())
    result("no_key", **call(bpy.ops.framefarm.test_connection))
    bpy.context.preferences.addons[package].preferences.api_key = CONFIG["api_key"]
    before = saved_userpref()
    vendor = os.path.join(os.path.dirname(addon.__file__), "vendor")
    addon_utils.disable(package, default_set=False)
    vendor_on_path_disabled = vendor in sys.path
    addon_utils.enable(package, default_set=False, handle_error=None)
    prefs = bpy.context.preferences.addons[package].preferences
    result(
        "migrated",
        **key_file_facts(),
        old_key_cleared=prefs.api_key == "" and not prefs.is_property_set("api_key"),
        prefs_dirty=bpy.context.preferences.is_dirty,
        old_version_saved_key=before["key_saved"],
        after=saved_userpref(),
        vendor=os.path.isdir(vendor),
        vendor_on_path=vendor in sys.path,
        vendor_on_path_disabled=vendor_on_path_disabled,
    )
    return prefs


def file_sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    # Built first: the scene builder resets Blender to factory settings, add-ons included.
    shot = textured_scene.build(CONFIG["project"], (1.0, 0.0, 0.0))
    cached_shot = textured_scene.build(
        CONFIG["cached_project"], (0.0, 1.0, 0.0), absolute=True, cached=True, compressed=True
    )
    with open(cached_shot, "rb") as f:
        result("cached_built", magic=f.read(4).hex())
    sys.meta_path.insert(0, HideSitePackages())
    package, addon = install()
    import blender_asset_tracer
    import zstandard

    result("installed", package=package, bat=blender_asset_tracer.__file__, zstd=zstandard.__file__)

    bpy.ops.wm.open_mainfile(filepath=shot)
    prefs = bpy.context.preferences.addons[package].preferences
    prefs.manager_url = CONFIG["manager_url"]
    prefs.masked_api_key = CONFIG["api_key"]
    result(
        "credentials",
        **key_file_facts(),
        shown=prefs.masked_api_key == CONFIG["api_key"],
        userpref=saved_userpref(),
    )
    result(
        "connection",
        **call(bpy.ops.framefarm.test_connection),
        message=addon.preferences.state().connection_message,
    )
    submission = bpy.context.scene.framefarm
    result(
        "form", job_type=submission.job_type_name, keys=[item.key for item in submission.settings]
    )

    submit(addon, "first")
    submit(addon, "again")
    # Copied, not made with bpy, so the open file stays as it was.
    shutil.copyfile(CONFIG["green_png"], os.path.join(CONFIG["project"], "textures", "paint.png"))
    submit(addon, "texture_changed")

    before = file_sha(shot)
    bpy.context.scene.render.resolution_percentage = 50  # unsaved change
    submit(addon, "dirty")
    leftovers = [n for n in os.listdir(os.path.dirname(shot)) if n.startswith(".framefarm")]
    result(
        "dirty_file",
        unchanged=file_sha(shot) == before,
        filepath=bpy.data.filepath,
        leftovers=leftovers,
    )

    modal_steps(addon)
    submission.type_etag = "0" * 16  # as if the job type changed on the manager since
    submit(addon, "stale_form")
    result("form_reloaded", etag=submission.type_etag)

    addon.preferences.state().recent_jobs = []
    result(
        "jobs",
        **call(bpy.ops.framefarm.refresh_jobs),
        jobs=[[j["id"], j["status"]] for j in addon.preferences.state().recent_jobs],
    )
    timer_refresh(addon)
    addon.preferences.state().last_job = {"id": 7, "name": "shot"}
    addon.preferences.state().last_job_url = CONFIG["manager_url"] + "/jobs/7"
    result("draw", **draw_recorder.draw_everything(addon, prefs))
    addon.preferences.state().last_job = None

    prefs.masked_api_key = "ff_not-a-key"
    submit(addon, "bad_key")
    prefs.masked_api_key = CONFIG["api_key"]
    prefs.manager_url = "http://127.0.0.1:9"
    submit(addon, "unreachable")
    result("test_unreachable", **call(bpy.ops.framefarm.test_connection))
    if hasattr(bpy.app, "online_access"):  # Blender 4.2+; off in background mode
        prefs.manager_url = "http://farm.example.invalid:8080"
        online = bpy.app.online_access
        result("internet_host", online_access=online, **call(bpy.ops.framefarm.refresh_job_types))
    prefs.manager_url = CONFIG["manager_url"]
    os.remove(os.path.join(CONFIG["project"], "textures", "paint.png"))
    result("check_files", **call(bpy.ops.framefarm.check_files))
    result("check_files_warnings", warnings=addon.preferences.state().warnings)
    submit(addon, "texture_missing")

    migration(package, addon)
    bpy.ops.wm.open_mainfile(filepath=cached_shot)
    submit(addon, "cached")  # a compressed file, with the key moved from the preferences
    result("done")


try:
    main()
    # Blender 3.4 crashes on quitting after a -P script that imported multiprocessing (as
    # blender-asset-tracer does) while multiprocessing's alias of that script's __main__
    # is still registered; `import multiprocessing` alone shows it. Not the add-on's doing.
    sys.modules.pop("__mp_main__", None)
except Exception:
    traceback.print_exc()
    sys.stdout.flush()
    os._exit(1)
