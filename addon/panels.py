"""The Render Farm panel, in the 3D view's sidebar and in Output Properties (same drawing)."""

import time

import bpy

from .form import value_property
from .preferences import preferences, state
from .scene_info import scene_problems, scene_summary

STATUS_ICONS = {
    "queued": "TIME",
    "active": "PLAY",
    "completed": "CHECKMARK",
    "failed": "ERROR",
    "canceled": "X",
    "paused": "PAUSE",
}
MESSAGE_ICONS = {"INFO": "INFO", "WARNING": "ERROR", "ERROR": "CANCEL"}


def draw_farm_panel(layout, context) -> None:
    farm = state()
    scene = context.scene
    submission = scene.framefarm
    layout.label(text=f"Manager: {preferences(context).manager_url}", icon="URL")

    row = layout.row(align=True)
    row.prop(submission, "job_type")
    row.operator("framefarm.refresh_job_types", text="", icon="FILE_REFRESH")
    layout.prop(submission, "job_name")
    layout.prop(submission, "priority")
    draw_settings_form(layout.column(), submission)
    draw_scene_summary(layout.box(), scene, submission)

    if farm.submitting:
        flow = farm.flow
        box = layout.box()
        box.label(text=flow.message, icon="EXPORT")
        draw_progress(box, flow.progress)
        box.operator("framefarm.cancel_submission", icon="CANCEL")
    else:
        row = layout.row(align=True)
        row.operator("framefarm.submit_job", icon="RENDER_ANIMATION")
        row.operator("framefarm.check_files", text="", icon="VIEWZOOM")
    if farm.message:
        layout.label(text=farm.message, icon=MESSAGE_ICONS.get(farm.message_level, "INFO"))
    for warning in farm.warnings[:8]:
        layout.label(text=warning, icon="ERROR")
    if farm.last_job is not None:
        row = layout.row()
        row.label(text=f"Job {farm.last_job['id']}: {farm.last_job['name']}")
        row.operator("framefarm.open_job_page", text="Open page", icon="URL")
    draw_my_jobs(layout.box(), farm)


def draw_settings_form(layout, submission) -> None:
    for item in submission.settings:
        row = layout.row(align=True)
        if item.has_eval and not item.eval_toggle:
            row.label(text=f"{item.label}: from the scene at submit time")
            continue
        if item.has_eval:
            row.prop(item, "auto", text="", icon="AUTO")
            if item.auto:
                row.label(text=f"{item.label}: from the scene at submit time")
                continue
        if item.optional:
            row.prop(item, "enabled", text="")
            row = row.row(align=True)
            row.enabled = item.enabled
        row.prop(item, value_property(item), text=item.label)


def draw_scene_summary(layout, scene, submission) -> None:
    layout.prop(
        submission,
        "show_scene",
        text="Scene",
        emboss=False,
        icon="TRIA_DOWN" if submission.show_scene else "TRIA_RIGHT",
    )
    if submission.show_scene:
        for label, value in scene_summary(scene, bpy.app.version_string):
            layout.label(text=f"{label}: {value}")
    for problem in scene_problems(scene):
        layout.label(text=problem, icon="ERROR")


def draw_progress(layout, fraction: float) -> None:
    if hasattr(layout, "progress"):  # Blender 4.0+
        layout.progress(factor=fraction, type="BAR", text=f"{fraction:.0%}")
    else:
        layout.label(text=f"{fraction:.0%} done")


def draw_my_jobs(layout, farm) -> None:
    farm.jobs_panel_seen_at = time.monotonic()
    row = layout.row()
    row.label(text="My jobs")
    row.operator("framefarm.refresh_jobs", text="", icon="FILE_REFRESH")
    if farm.recent_jobs_error:
        layout.label(text=farm.recent_jobs_error, icon="ERROR")
    for job in farm.recent_jobs[:10]:
        done = f"{job['frames_done']}/{job['frame_count']}" if job.get("frame_count") else ""
        layout.label(
            text=f"{job['id']} {job['name']}  {job['status']}  {done}",
            icon=STATUS_ICONS.get(job["status"], "DOT"),
        )


class FRAMEFARM_PT_sidebar(bpy.types.Panel):
    bl_label = "Render Farm"
    bl_idname = "FRAMEFARM_PT_sidebar"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Render Farm"

    def draw(self, context):
        draw_farm_panel(self.layout, context)


class FRAMEFARM_PT_output(bpy.types.Panel):
    bl_label = "Render Farm"
    bl_idname = "FRAMEFARM_PT_output"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context):
        draw_farm_panel(self.layout, context)


CLASSES = (FRAMEFARM_PT_sidebar, FRAMEFARM_PT_output)
