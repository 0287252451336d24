"""Draw the add-on's panels inside real Blender with a layout that checks every call.

Background mode has no window to draw in, so each panel's ``draw`` gets the real context
and a recording layout. The recorder checks what Blender would: the property exists on
the data, the operator is registered, the icon is one this Blender knows.
"""

import types

import bpy

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class RecordingLayout:
    def __init__(self, problems, lines):
        self.problems = problems
        self.lines = lines
        self.enabled = True
        self.alert = False

    def _icon(self, icon):
        if icon not in ICONS:
            self.problems.append(f"unknown icon {icon!r}")

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.problems, self.lines)

    row = column = box = split = _child

    def separator(self, **kwargs):
        pass

    def label(self, text="", icon="NONE", **kwargs):
        self._icon(icon)
        self.lines.append(text)

    def prop(self, data, name, text=None, icon="NONE", **kwargs):
        self._icon(icon)
        if name not in data.bl_rna.properties:
            self.problems.append(f"{type(data).__name__} has no property {name!r}")
        else:
            getattr(data, name)  # enum items callbacks and getters run here
        self.lines.append(f"[{name}]")

    def operator(self, idname, text=None, icon="NONE", **kwargs):
        self._icon(icon)
        module, name = idname.split(".")
        try:
            getattr(getattr(bpy.ops, module), name).get_rna_type()
        except (AttributeError, KeyError):
            self.problems.append(f"operator {idname} is not registered")
        self.lines.append(f"<{idname}>")

    def progress(self, factor=0.0, type="BAR", text=""):
        if not 0.0 <= factor <= 1.0:
            self.problems.append(f"progress {factor} outside 0..1")
        self.lines.append(f"progress {text}")


def draw(panel_class, context, problems):
    lines = []
    try:
        panel_class.draw(types.SimpleNamespace(layout=RecordingLayout(problems, lines)), context)
    except Exception as error:  # a draw that raises is what this check is for
        problems.append(f"{panel_class.__name__}.draw raised {type(error).__name__}: {error}")
    return lines


def draw_everything(addon, prefs):
    """Both panels idle, during an upload and after a job; the preferences. → problems."""
    problems = []
    panels = addon.panels
    context = bpy.context
    sidebar = draw(panels.FRAMEFARM_PT_sidebar, context, problems)
    output = draw(panels.FRAMEFARM_PT_output, context, problems)
    if sidebar != output:
        problems.append("the sidebar and the output panel differ")
    if "<framefarm.submit_job>" not in sidebar:
        problems.append(f"no submit button in {sidebar}")

    state = addon.preferences.state()
    flow = addon.submit_flow.SubmitFlow.__new__(addon.submit_flow.SubmitFlow)
    flow.phase, flow.message = addon.submit_flow.Phase.UPLOADING, "Uploading 1 of 3 files…"
    flow.hash_total = flow.hashed_bytes = 10
    flow.upload_total, flow.uploaded_bytes = 4, 1
    saved, state.flow = state.flow, flow
    uploading = draw(panels.FRAMEFARM_PT_sidebar, context, problems)
    state.flow = saved
    if "<framefarm.cancel_submission>" not in uploading or not any(
        line.startswith("progress") or line.endswith("% done") for line in uploading
    ):
        problems.append(f"no progress and cancel while uploading: {uploading}")

    prefs_lines = []
    addon.preferences.draw_preferences(RecordingLayout(problems, prefs_lines), prefs, state)
    if "<framefarm.test_connection>" not in prefs_lines:
        problems.append(f"no test connection button in {prefs_lines}")
    if not {"[masked_api_key]", "<framefarm.forget_api_key>"} <= set(prefs_lines):
        problems.append(f"no masked API key field and forget button in {prefs_lines}")
    if "[api_key]" in prefs_lines:
        problems.append("the old preference that held the key in clear text is drawn")
    return {"problems": problems, "sidebar": sidebar, "uploading": uploading, "prefs": prefs_lines}
