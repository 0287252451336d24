"""Add-on preferences: where the manager is, the artist's API key, a connection test."""

import bpy

from .ui_state import FarmState


def addon_package() -> str:
    """``framefarm`` as a legacy add-on, ``bl_ext.<repo>.framefarm`` as an extension."""
    return __package__


class FRAMEFARM_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    manager_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Manager URL",
        default="http://localhost:8080",
        description="Address of the framefarm manager, e.g. http://farm:8080",
    )
    api_key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="API key",
        subtype="PASSWORD",
        description="A user API key (ff_…) from 'framefarm manager config add apikey'",
    )

    def draw(self, context):
        draw_preferences(self.layout, self, state())


def draw_preferences(layout, prefs, farm: FarmState) -> None:
    layout.prop(prefs, "manager_url")
    layout.prop(prefs, "api_key")
    layout.operator("framefarm.test_connection", icon="URL")
    if farm.connection_message:
        for line in farm.connection_message.splitlines():
            layout.label(text=line)


def preferences(context):
    return context.preferences.addons[addon_package()].preferences


_STATE = FarmState()


def state() -> FarmState:
    """The add-on's state while it is enabled (replaced on every register)."""
    return _STATE


def reset_state() -> None:
    global _STATE
    _STATE = FarmState()
