"""A test scene whose world brightness comes from its own Python: a registered text block
defines a function in Blender's driver namespace and a driver calls it. Only where the
file's scripts run does the sky render 40× brighter; elsewhere the driver is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import OpenEXR

from runner.blender import BlenderBackend, blender_env, build_script_argv
from tests.conftest import MakeScene

GAIN = 40.0
# Runs with the file's scripts off, so the text block does not run here and the driver
# cannot evaluate: the saved strength stays 1.0. The call is no "simple expression" that
# Blender would evaluate without Python, nor in the names it allows with scripts off.
ADD_DRIVER = f"""
import sys
import bpy

args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
if "--blend" in args:
    path = args[args.index("--blend") + 1]
    bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)
text = bpy.data.texts.new("framefarm_gain.py")
text.write("import bpy\\nbpy.app.driver_namespace['framefarm_gain'] = lambda: {GAIN}\\n")
text.use_module = True  # "Register": runs when the file loads, if its scripts may run
strength = bpy.context.scene.world.node_tree.nodes["Background"].inputs["Strength"]
driver = strength.driver_add("default_value").driver
driver.type = "SCRIPTED"
driver.expression = "framefarm_gain()"
strength.default_value = 1.0
bpy.ops.wm.save_mainfile()
print("@framefarm-test driver added", flush=True)
"""


def make_driven_scene(make_scene: MakeScene, backend: BlenderBackend, folder: Path) -> Path:
    """A 32x32, 1-sample scene of ``backend``'s own version, with the Python driver."""
    scene = make_scene(backend, folder / "driven.blend", frame_end=2, size=32, samples=1)
    script = folder / "add_driver.py"
    script.write_text(ADD_DRIVER)
    done = subprocess.run(
        build_script_argv(backend, script, [], blend_file=scene),
        env=blender_env(folder / "home"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "driver added" in done.stdout, (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
    return scene


def brightness(path: Path) -> float:
    """Mean red of an EXR frame."""
    channels = OpenEXR.File(str(path), separate_channels=True).channels()
    return float(np.asarray(channels["R"].pixels, dtype=np.float64).mean())


def assert_scripts_ran(with_scripts: float, without: float) -> None:
    """The sky is 40× brighter where the driver ran; the ground and cube add the same."""
    assert with_scripts > 3 * without, (with_scripts, without)
