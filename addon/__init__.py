"""framefarm add-on: submit renders to a framefarm manager from inside Blender.

This first version registers the preferences (manager URL and API key) and the sidebar
panel; packing, upload and submission come with the add-on work (see the README).
"""

bl_info = {
    "name": "framefarm",
    "author": "framefarm developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "View3D > Sidebar > Render Farm",
    "description": "Submit renders to a framefarm render farm",
    "category": "Render",
}

import bpy  # noqa: E402


class FRAMEFARM_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__ or __name__

    manager_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Manager URL", default="http://localhost:8080"
    )
    api_key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="API key", subtype="PASSWORD", description="a user API key (ff_…)"
    )

    def draw(self, context):
        self.layout.prop(self, "manager_url")
        self.layout.prop(self, "api_key")


class FRAMEFARM_PT_sidebar(bpy.types.Panel):
    bl_label = "Render Farm"
    bl_idname = "FRAMEFARM_PT_sidebar"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Render Farm"

    def draw(self, context):
        prefs = context.preferences.addons[FRAMEFARM_AP_preferences.bl_idname].preferences
        layout = self.layout
        layout.label(text=f"Manager: {prefs.manager_url}")
        scene = context.scene
        layout.label(text=f"Frames {scene.frame_start}-{scene.frame_end} at {scene.render.fps} fps")
        layout.label(text="Submit from Blender is not available yet;")
        layout.label(text="use 'framefarm submit' meanwhile.")


CLASSES = (FRAMEFARM_AP_preferences, FRAMEFARM_PT_sidebar)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
