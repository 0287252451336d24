"""Scene properties: the chosen job type, its settings form, the job name and priority."""

import bpy

from .preferences import state

# Blender keeps only the strings of enum items that Python keeps alive: cache them.
_ITEMS_CACHE: dict[str, list[tuple[str, str, str]]] = {}


def _job_type_items(self, context):
    items = [
        (t["name"], t.get("label") or t["name"], t.get("description") or "")
        for t in state().job_types
    ]
    _ITEMS_CACHE["job_types"] = items or [("", "(press Refresh)", "")]
    return _ITEMS_CACHE["job_types"]


def _get_job_type(self):
    names = [t["name"] for t in state().job_types]
    return names.index(self.job_type_name) if self.job_type_name in names else 0


def _set_job_type(self, index):
    names = [t["name"] for t in state().job_types]
    if 0 <= index < len(names):
        self.job_type_name = names[index]
        from .form import rebuild_form

        rebuild_form(self)


def _choice_items(self, context):
    spec = state().job_type(self.id_data.framefarm.job_type_name) if self.id_data else None
    choices = []
    for setting in (spec or {}).get("settings", []):
        if setting["key"] == self.key:
            choices = [str(c) for c in setting.get("choices") or []]
    _ITEMS_CACHE["choice:" + self.key] = [(c, c, "") for c in choices] or [("", "", "")]
    return _ITEMS_CACHE["choice:" + self.key]


def _get_choice(self):
    values = [item[0] for item in _choice_items(self, None)]
    return values.index(self.string_value) if self.string_value in values else 0


def _set_choice(self, index):
    values = [item[0] for item in _choice_items(self, None)]
    if 0 <= index < len(values):
        self.string_value = values[index]


class FRAMEFARM_PG_setting(bpy.types.PropertyGroup):
    key: bpy.props.StringProperty()  # type: ignore[valid-type]
    setting_type: bpy.props.StringProperty()  # type: ignore[valid-type]
    label: bpy.props.StringProperty()  # type: ignore[valid-type]
    description: bpy.props.StringProperty()  # type: ignore[valid-type]
    has_choices: bpy.props.BoolProperty()  # type: ignore[valid-type]
    has_eval: bpy.props.BoolProperty()  # type: ignore[valid-type]
    eval_toggle: bpy.props.BoolProperty()  # type: ignore[valid-type]
    optional: bpy.props.BoolProperty()  # type: ignore[valid-type]
    auto: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Auto", default=True, description="Compute this setting from the scene at submit time"
    )
    enabled: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Set", description="Send this setting; off, the manager's default applies"
    )
    string_value: bpy.props.StringProperty(name="Value")  # type: ignore[valid-type]
    int_value: bpy.props.IntProperty(name="Value")  # type: ignore[valid-type]
    float_value: bpy.props.FloatProperty(name="Value")  # type: ignore[valid-type]
    bool_value: bpy.props.BoolProperty(name="Value")  # type: ignore[valid-type]
    choice_value: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Value", items=_choice_items, get=_get_choice, set=_set_choice
    )


class FRAMEFARM_PG_submission(bpy.types.PropertyGroup):
    job_type_name: bpy.props.StringProperty()  # type: ignore[valid-type]
    job_type: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Job type", items=_job_type_items, get=_get_job_type, set=_set_job_type
    )
    type_etag: bpy.props.StringProperty()  # type: ignore[valid-type]
    job_name: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Job name", description="Empty: the name of the .blend file"
    )
    priority: bpy.props.IntProperty(name="Priority", default=50, min=0, max=100)  # type: ignore[valid-type]
    settings: bpy.props.CollectionProperty(type=FRAMEFARM_PG_setting)  # type: ignore[valid-type]
    show_scene: bpy.props.BoolProperty(name="Scene", default=True)  # type: ignore[valid-type]
