"""Add-on preferences: where the manager is, the artist's API key, a connection test.

The API key is not a stored preference: the masked field's property reads and writes the
credentials file (``credentials.py``) in Blender's user config folder, so ``userpref.blend``
never holds it. Versions up to 0.2 kept it in the ``api_key`` preference; it moves to the
file once, and that preference is cleared.
"""

from pathlib import Path

import bpy

from .credentials import ApiKeyStore, CredentialsError, migrate_key
from .ui_state import FarmState

OLD_KEY_PROPERTY = "api_key"


def addon_package() -> str:
    """``framefarm`` as a legacy add-on, ``bl_ext.<repo>.framefarm`` as an extension."""
    return __package__


def _get_api_key(prefs) -> str:
    return api_keys().load()


def _set_api_key(prefs, value: str) -> None:
    try:
        api_keys().save(value)
    except CredentialsError as error:
        state().say("ERROR", str(error))


class FRAMEFARM_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    manager_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Manager URL",
        default="http://localhost:8080",
        description="Address of the framefarm manager, e.g. http://farm:8080",
    )
    masked_api_key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="API key",
        subtype="PASSWORD",
        description=(
            "A user API key (ff_…) from 'framefarm manager config add apikey'; kept in a file "
            "only you can read in Blender's config folder, not in the preferences"
        ),
        get=_get_api_key,
        set=_set_api_key,
    )
    # Where versions up to 0.2 kept the key, saved in userpref.blend in clear text. Kept
    # declared so Blender still reads it (3.x and 5.0 store it differently); never drawn.
    api_key: bpy.props.StringProperty(options={"HIDDEN"})  # type: ignore[valid-type]

    def draw(self, context):
        migrate_old_key(context, self)
        draw_preferences(self.layout, self, state())


def draw_preferences(layout, prefs, farm: FarmState) -> None:
    layout.prop(prefs, "manager_url")
    row = layout.row(align=True)
    row.prop(prefs, "masked_api_key")
    row.operator("framefarm.forget_api_key", text="", icon="TRASH")
    if api_keys().has_key():
        layout.label(text=f"API key kept in {api_keys().path} (readable by you only)")
    else:
        layout.label(text="No API key stored: paste a user key (ff_…)")
    layout.operator("framefarm.test_connection", icon="URL")
    if farm.connection_message:
        for line in farm.connection_message.splitlines():
            layout.label(text=line)


def preferences(context):
    prefs = context.preferences.addons[addon_package()].preferences
    migrate_old_key(context, prefs)
    return prefs


def api_key() -> str:
    """The artist's API key, or "" when none is stored."""
    return api_keys().load()


def migrate_old_key(context, prefs) -> None:
    """Move a key older versions saved in the preferences into the credentials file, once."""
    global _MIGRATION_CHECKED
    if _MIGRATION_CHECKED:
        return
    _MIGRATION_CHECKED = True
    if not prefs.is_property_set(OLD_KEY_PROPERTY):
        return
    try:
        migrate_key(api_keys(), getattr(prefs, OLD_KEY_PROPERTY))
    except CredentialsError as error:
        state().say("ERROR", f"{error}; the key stays in the preferences for now")
        return
    prefs.property_unset(OLD_KEY_PROPERTY)
    context.preferences.is_dirty = True  # so Blender saves them again, without it


_STATE = FarmState()
_API_KEYS: ApiKeyStore | None = None
_MIGRATION_CHECKED = False


def state() -> FarmState:
    """The add-on's state while it is enabled (replaced on every register)."""
    return _STATE


def api_keys() -> ApiKeyStore:
    """The credentials file in Blender's user config folder (found on first use)."""
    global _API_KEYS
    if _API_KEYS is None:
        _API_KEYS = ApiKeyStore(Path(bpy.utils.user_resource("CONFIG", path="framefarm")))
    return _API_KEYS


def reset_state() -> None:
    global _STATE, _API_KEYS, _MIGRATION_CHECKED
    _STATE = FarmState()
    _API_KEYS = None
    _MIGRATION_CHECKED = False
