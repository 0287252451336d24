"""Build a small animated Cycles scene for tests and demos, and save it as a .blend.

Runs inside Blender (bpy + stdlib only), on Blender 3.4 and bpy 5.0:

    blender -b --factory-startup --python-exit-code 1 -P make_scene.py -- --output scene.blend
    python make_scene.py --output scene.blend          # a Python with the bpy module

Prints ``@framefarm {"event": "scene_saved", "path": ...}`` once the file is saved.
"""

import argparse
import json
import math
import os
import sys

import bpy

EVENT_PREFIX = "@framefarm "


def emit(event, **data):
    print(EVENT_PREFIX + json.dumps({"event": event, **data}, separators=(",", ":")), flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="make_scene.py", description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="where to save the .blend")
    parser.add_argument("--frame-start", type=int, default=1)
    parser.add_argument("--frame-end", type=int, default=6)
    parser.add_argument("--size", type=int, default=64, help="square resolution in pixels")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--transparent", action="store_true", help="film_transparent on")
    return parser.parse_args(argv)


def script_args():
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


def clear_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.lights, bpy.data.cameras):
        for block in list(collection):
            collection.remove(block)
    return scene


def configure_render(scene, args):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = False  # Debian's Blender 3.4 has no OpenImageDenoise
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x = args.size
    scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    scene.render.fps = args.fps
    scene.render.film_transparent = args.transparent
    scene.frame_start = args.frame_start
    scene.frame_end = args.frame_end
    scene.frame_current = args.frame_start

    image = scene.render.image_settings
    if hasattr(image, "media_type"):  # Blender 5.0 groups formats by media type
        image.media_type = "IMAGE"
    image.file_format = "OPEN_EXR"
    image.color_mode = "RGBA"
    image.color_depth = "16"
    image.exr_codec = "ZIP"
    scene.render.filepath = "//render/frame_######"


def build_world(scene):
    world = bpy.data.worlds.new("World")
    if world.node_tree is None:  # Blender 5.0 always has one and deprecates use_nodes
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    if background is not None:
        background.inputs["Color"].default_value = (0.05, 0.07, 0.1, 1.0)
    scene.world = world


def add_object(scene, name, data, location, rotation=(0.0, 0.0, 0.0)):
    obj = bpy.data.objects.new(name, data)
    obj.location = location
    obj.rotation_euler = rotation
    scene.collection.objects.link(obj)
    return obj


def plane_mesh(name, half_size):
    s = half_size
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], [], [(0, 1, 2, 3)])
    return mesh


def cube_mesh(name, half_size):
    s = half_size
    verts = [(x, y, z) for x in (-s, s) for y in (-s, s) for z in (-s, s)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    return mesh


def material(name, color):
    mat = bpy.data.materials.new(name)
    mat.diffuse_color = color
    if mat.node_tree is None:
        mat.use_nodes = True
    shader = mat.node_tree.nodes.get("Principled BSDF")
    if shader is not None:
        shader.inputs["Base Color"].default_value = color
    return mat


def build_scene(scene, args):
    build_world(scene)

    camera = add_object(
        scene, "Camera", bpy.data.cameras.new("Camera"), (7.0, -7.0, 5.0), (1.1, 0.0, 0.785)
    )
    scene.camera = camera

    light_data = bpy.data.lights.new("Sun", type="SUN")
    light_data.energy = 3.0
    add_object(scene, "Sun", light_data, (4.0, -2.0, 6.0), (0.6, 0.2, 0.4))

    ground = add_object(scene, "Ground", plane_mesh("Ground", 6.0), (0.0, 0.0, 0.0))
    ground.data.materials.append(material("Ground", (0.6, 0.6, 0.6, 1.0)))

    cube = add_object(scene, "Cube", cube_mesh("Cube", 1.0), (-2.0, 0.0, 1.0))
    cube.data.materials.append(material("Cube", (0.8, 0.2, 0.1, 1.0)))
    # Keyframed motion so that every frame of the range differs.
    span = max(args.frame_end - args.frame_start, 1)
    for frame, x, turn in ((args.frame_start, -2.0, 0.0), (args.frame_start + span, 2.0, 1.0)):
        cube.location.x = x
        cube.rotation_euler.z = turn * math.pi / 2
        cube.keyframe_insert("location", frame=frame)
        cube.keyframe_insert("rotation_euler", frame=frame)


def main():
    args = parse_args(script_args())
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    scene = clear_scene()
    configure_render(scene, args)
    build_scene(scene, args)
    bpy.ops.wm.save_as_mainfile(filepath=output, check_existing=False)
    emit("scene_saved", path=output)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        sys.exit(1)
