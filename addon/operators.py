"""Operators: test the connection, load job types, submit (modal, ESC cancels), follow jobs.

Every operator catches errors at its boundary and reports them with ``self.report``; the
message says what to do. Submitting is a SubmitFlow stepped on a timer by the modal
operator; ``execute`` (background mode, scripts) steps the same flow to the end.
"""

import tempfile
import time
import uuid
from pathlib import Path

import bpy

from . import client
from .credentials import CredentialsError
from .farm_shared import setting_eval
from .form import rebuild_form, rows_of
from .online_access import online_access_problem
from .preferences import api_key, api_keys, preferences, state
from .scene_info import external_files, missing_files, scene_problems
from .settings_form import submitted_settings
from .submit_flow import Phase, SubmitFlow, SubmitRequest

STEP_SECONDS = 0.03  # work per timer tick, so Blender redraws between slices


def manager_address(context) -> client.ManagerAddress:
    prefs = preferences(context)
    problem = online_access_problem(prefs.manager_url, getattr(bpy.app, "online_access", True))
    if problem:
        raise client.ManagerUnreachable(problem)
    key = api_key()
    if not key:
        raise client.BadApiKey("no API key yet: paste a user key (ff_…) in the add-on preferences")
    return client.ManagerAddress(prefs.manager_url, key)


def load_job_types(context) -> None:
    """Fetch the schemas and rebuild the form of every scene for the chosen type."""
    state().job_types = client.job_types(manager_address(context))
    for scene in bpy.data.scenes:
        rebuild_form(scene.framefarm)


class FarmOperator:
    """Runs ``act`` and turns every error into a report instead of a traceback."""

    def act(self, context) -> set:
        raise NotImplementedError

    def execute(self, context):
        return self.guarded(self.act, context)

    def guarded(self, action, context) -> set:
        try:
            return action(context)
        except client.FarmClientError as error:
            state().say("ERROR", str(error))
            self.report({"ERROR"}, str(error))
        except Exception as error:
            message = f"framefarm: unexpected {type(error).__name__}: {error}"
            state().say("ERROR", message)
            self.report({"ERROR"}, message)
        return {"CANCELLED"}


class FRAMEFARM_OT_test_connection(FarmOperator, bpy.types.Operator):
    """Ask the manager for its version and job types"""

    bl_idname = "framefarm.test_connection"
    bl_label = "Test connection"

    def act(self, context):
        address = manager_address(context)
        version = client.manager_version(address)
        load_job_types(context)
        names = ", ".join(t["name"] for t in state().job_types) or "none"
        state().manager_version = version
        state().connection_message = f"Connected: manager {version}\nJob types: {names}"
        self.report({"INFO"}, f"Connected to manager {version}; job types: {names}")
        return {"FINISHED"}


class FRAMEFARM_OT_forget_api_key(FarmOperator, bpy.types.Operator):
    """Remove the API key from this computer (paste a key again to submit)"""

    bl_idname = "framefarm.forget_api_key"
    bl_label = "Forget API key"

    def act(self, context):
        try:
            api_keys().forget()
        except CredentialsError as error:
            raise client.FarmClientError(str(error)) from error
        self.report({"INFO"}, "API key removed from this computer")
        return {"FINISHED"}


class FRAMEFARM_OT_refresh_job_types(FarmOperator, bpy.types.Operator):
    """Load the job types and their settings from the manager"""

    bl_idname = "framefarm.refresh_job_types"
    bl_label = "Refresh job types"

    def act(self, context):
        load_job_types(context)
        self.report({"INFO"}, f"{len(state().job_types)} job types loaded")
        return {"FINISHED"}


def blend_to_pack(context) -> tuple[Path, str | None, list[Path], Path]:
    """(file to pack, its name in the job, files to remove after, staging folder).

    A saved, unchanged file is packed as it is. Otherwise a copy is saved (``copy=True``
    leaves the artist's file and its path alone): next to the original, so relative paths
    stay valid, or in the staging folder for a file never saved.
    """
    staging = Path(tempfile.mkdtemp(prefix="framefarm-submit-"))
    current = bpy.data.filepath
    if current and not bpy.data.is_dirty:
        return Path(current), None, [], staging
    if current:
        original = Path(current)
        copy = original.with_name(f".framefarm-submit-{uuid.uuid4().hex[:8]}.blend")
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True)
            return copy, original.name, [copy], staging
        except RuntimeError:  # a read-only folder: Blender remaps relative paths instead
            copy = staging / original.name
            bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True, relative_remap=True)
            return copy, None, [], staging
    copy = staging / "untitled.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True)
    return copy, None, [], staging


class FRAMEFARM_OT_submit_job(FarmOperator, bpy.types.Operator):
    """Pack the scene, upload what the manager lacks and submit the job (ESC cancels)"""

    bl_idname = "framefarm.submit_job"
    bl_label = "Submit to the farm"

    _timer = None

    def act(self, context):
        flow = self.start(context)
        if flow is None:
            return {"CANCELLED"}
        flow.run_to_end()
        return self.finish(context, flow)

    def invoke(self, context, event):
        return self.guarded(self.begin, context)

    def begin(self, context):
        flow = self.start(context)
        if flow is None:
            return {"CANCELLED"}
        if context.window is None:
            flow.run_to_end()
            return self.finish(context, flow)
        manager = context.window_manager
        self._timer = manager.event_timer_add(0.05, window=context.window)
        manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        flow = state().flow
        if flow is None:
            return {"CANCELLED"}
        if event.type == "ESC":
            flow.cancel()
        elif event.type == "TIMER":
            deadline = time.monotonic() + STEP_SECONDS
            while flow.step() and time.monotonic() < deadline:
                pass
        redraw_farm_panels(context)
        if not flow.finished:
            return {"PASS_THROUGH"}
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
        return self.finish(context, flow)

    def start(self, context) -> SubmitFlow | None:
        farm = state()
        if farm.submitting:
            self.report({"WARNING"}, "A submission is already running; wait, or press ESC")
            return None
        address = manager_address(context)
        if not farm.job_types:
            load_job_types(context)
        scene = context.scene
        problems = scene_problems(scene)
        if problems:
            raise client.FarmClientError("cannot submit: " + "; ".join(problems))
        submission = scene.framefarm
        job_type = farm.job_type(submission.job_type_name)
        if job_type is None or not submission.type_etag:
            rebuild_form(submission)
            job_type = farm.job_type(submission.job_type_name)
        if job_type is None:
            raise client.FarmClientError("the manager has no job types to submit to")
        job_name = submission.job_name.strip() or Path(bpy.data.filepath or "untitled").stem

        def namespace(values):
            return setting_eval.eval_namespace(bpy, context, jobname=job_name, settings=values)

        try:
            settings = submitted_settings(job_type["settings"], rows_of(submission), namespace)
        except setting_eval.SettingEvalError as error:
            raise client.FarmClientError(f"cannot compute the job settings: {error}") from error
        farm.warnings = scene_missing_files()
        for warning in farm.warnings:
            self.report({"WARNING"}, warning)
        blend, name, remove_after, staging = blend_to_pack(context)
        job = {
            "type": job_type["name"],
            "settings": settings,
            "type_etag": submission.type_etag,
            "name": job_name,
            "priority": submission.priority,
        }
        farm.flow = SubmitFlow(SubmitRequest(address, blend, job, staging, name, remove_after))
        farm.say("INFO", farm.flow.message)
        return farm.flow

    def finish(self, context, flow: SubmitFlow):
        farm = state()
        farm.warnings += [w for w in flow.warnings if w not in farm.warnings]
        if flow.phase == Phase.DONE and flow.job is not None:
            farm.last_job = flow.job
            farm.last_job_url = client.job_page_url(flow.request.address, flow.job["id"])
            farm.say("INFO", flow.message)
            self.report({"INFO"}, flow.message)
            return {"FINISHED"}
        if flow.phase == Phase.CANCELED:
            farm.say("WARNING", flow.message)
            self.report({"WARNING"}, flow.message)
            return {"CANCELLED"}
        message = flow.message
        if flow.error_code == client.StaleJobType.code:
            try:
                load_job_types(context)
            except client.FarmClientError as error:
                message += f"; reloading the form failed too: {error}"
            else:
                message += "; check the settings and submit again"
        farm.say("ERROR", message)
        self.report({"ERROR"}, message)
        return {"CANCELLED"}


def scene_missing_files() -> list[str]:
    return missing_files(external_files(bpy.data, bpy.path.abspath))


class FRAMEFARM_OT_check_files(bpy.types.Operator):
    """List the files the scene uses that are not on disk (the job renders without them)"""

    bl_idname = "framefarm.check_files"
    bl_label = "Check files"

    def execute(self, context):
        state().warnings = scene_missing_files()
        if state().warnings:
            self.report({"WARNING"}, f"{len(state().warnings)} files are missing")
        else:
            self.report({"INFO"}, "Every file the scene uses is on disk")
        return {"FINISHED"}


class FRAMEFARM_OT_cancel_submission(bpy.types.Operator):
    """Stop the running upload; submitting again resumes it"""

    bl_idname = "framefarm.cancel_submission"
    bl_label = "Cancel upload"

    def execute(self, context):
        if state().flow is not None:
            state().flow.cancel()
        return {"FINISHED"}


class FRAMEFARM_OT_open_job_page(bpy.types.Operator):
    """Open the job's page on the manager in the web browser"""

    bl_idname = "framefarm.open_job_page"
    bl_label = "Open job page"

    def execute(self, context):
        if not state().last_job_url:
            self.report({"WARNING"}, "No job submitted yet")
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=state().last_job_url)
        return {"FINISHED"}


class FRAMEFARM_OT_refresh_jobs(FarmOperator, bpy.types.Operator):
    """Fetch your recent jobs from the manager"""

    bl_idname = "framefarm.refresh_jobs"
    bl_label = "Refresh my jobs"

    def act(self, context):
        state().refresh_jobs(manager_address(context), wait=True)
        if state().recent_jobs_error:
            raise client.FarmClientError(state().recent_jobs_error)
        return {"FINISHED"}


def redraw_farm_panels(context) -> None:
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen is not None else ():
        if area.type in ("VIEW_3D", "PROPERTIES"):
            area.tag_redraw()


CLASSES = (
    FRAMEFARM_OT_test_connection,
    FRAMEFARM_OT_forget_api_key,
    FRAMEFARM_OT_refresh_job_types,
    FRAMEFARM_OT_submit_job,
    FRAMEFARM_OT_check_files,
    FRAMEFARM_OT_cancel_submission,
    FRAMEFARM_OT_open_job_page,
    FRAMEFARM_OT_refresh_jobs,
)
