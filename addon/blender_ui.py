"""Registers the add-on's Blender classes, its scene properties and the jobs refresher."""

import bpy

from . import client, operators, panels, preferences, properties
from .online_access import online_access_problem

CLASSES = (
    preferences.FRAMEFARM_AP_preferences,
    properties.FRAMEFARM_PG_setting,
    properties.FRAMEFARM_PG_submission,
    *operators.CLASSES,
    *panels.CLASSES,
)
REFRESH_SECONDS = 1.0


def refresh_recent_jobs() -> float:
    """Timer: while "My jobs" is on screen, fetch it in a thread; redraw when it arrived."""
    farm = preferences.state()
    if farm.jobs_refresh_due():
        prefs = preferences.preferences(bpy.context)
        allowed = online_access_problem(prefs.manager_url, getattr(bpy.app, "online_access", True))
        key = preferences.api_key()
        if key and allowed is None:
            farm.refresh_jobs(client.ManagerAddress(prefs.manager_url, key))
    if not farm.jobs_updated:
        return REFRESH_SECONDS
    farm.jobs_updated = False
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PROPERTIES"):
                area.tag_redraw()
    return REFRESH_SECONDS


def register() -> None:
    preferences.reset_state()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.framefarm = bpy.props.PointerProperty(type=properties.FRAMEFARM_PG_submission)
    bpy.app.timers.register(refresh_recent_jobs, first_interval=REFRESH_SECONDS, persistent=True)
    enabled = bpy.context.preferences.addons.get(preferences.addon_package())
    if enabled is not None:  # Blender starting with the add-on on: its old key moves now
        preferences.migrate_old_key(bpy.context, enabled.preferences)


def unregister() -> None:
    if bpy.app.timers.is_registered(refresh_recent_jobs):
        bpy.app.timers.unregister(refresh_recent_jobs)
    if preferences.state().flow is not None:
        preferences.state().flow.cancel()
    del bpy.types.Scene.framefarm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
