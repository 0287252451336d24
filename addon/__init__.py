"""framefarm add-on: submit renders to a framefarm manager from inside Blender.

Importing this package has no side effects and does not import bpy, so the plain-Python
parts (client, packing, submit_flow, settings_form, scene_info) are tested with plain
pytest; ``register()`` brings in the Blender classes.
"""

import sys
from pathlib import Path

bl_info = {
    "name": "framefarm",
    "author": "framefarm developers",
    "version": (0, 2, 0),
    "blender": (3, 4, 0),
    "location": "View3D > Sidebar > Render Farm, and Properties > Output > Render Farm",
    "description": "Submit renders to a framefarm render farm",
    "category": "Render",
}

# The legacy zip for Blender 3.x carries blender-asset-tracer and zstandard here; the 4.2+
# extension installs them as wheels instead.
VENDOR = Path(__file__).resolve().parent / "vendor"


def register() -> None:
    if VENDOR.is_dir() and str(VENDOR) not in sys.path:
        sys.path.append(str(VENDOR))
    from . import blender_ui

    blender_ui.register()


def unregister() -> None:
    from . import blender_ui

    blender_ui.unregister()
    # Modules already imported stay loaded (a compiled one cannot be unloaded); the path
    # goes, so a removed or updated add-on's folder is not searched again.
    while str(VENDOR) in sys.path:
        sys.path.remove(str(VENDOR))
