"""Build a project whose shot uses a texture and a library in other folders (runs in Blender).

    project/textures/paint.png     8x8 PNG of one colour
    project/library/props.blend    object "Prop": a plane with a blue emission material
    project/shots/shot.blend       a plane on the left showing paint.png (emission), the
                                   linked "Prop" on the right, an orthographic camera above

A 64x64 render shows the texture's colour at pixel (32, 16) and blue at (32, 48). The
texture and library are referenced by relative paths (``//../textures/paint.png``).
Usage: ``python textured_scene.py ROOT R,G,B [absolute]`` (or ``blender -b -P … -- …``);
``absolute`` keeps the texture's path absolute.
Also importable inside Blender: ``write_texture(path, rgb)``.
"""

import os
import sys

import bpy


def write_texture(path, rgb):
    image = bpy.data.images.new("paint-out", 8, 8)
    image.pixels[:] = [*rgb, 1.0] * 64
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def plane(name, x):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(
        [(-0.5, -0.5, 0), (0.5, -0.5, 0), (0.5, 0.5, 0), (-0.5, 0.5, 0)], [], [(0, 1, 2, 3)]
    )
    mesh.uv_layers.new(name="UVMap")
    obj = bpy.data.objects.new(name, mesh)
    obj.location = (x, 0.0, 0.0)
    return obj


def emission_material(name, image=None, color=(0.0, 0.0, 1.0, 1.0)):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for node in list(nodes):
        nodes.remove(node)
    output = nodes.new("ShaderNodeOutputMaterial")
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = color
    mat.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    if image is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = image
        texture.interpolation = "Closest"
        mat.node_tree.links.new(texture.outputs["Color"], emission.inputs["Color"])
    return mat


def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.materials):
        for block in list(collection):
            collection.remove(block)
    return bpy.context.scene


def render_settings(scene):
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.frame_start = scene.frame_end = 1
    world = bpy.data.worlds.new("Black")
    if world.node_tree is None:
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    if background is not None:
        background.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
    scene.world = world
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 2.0
    camera.location = (0.0, 0.0, 5.0)
    scene.collection.objects.link(camera)
    scene.camera = camera


def build(root, rgb, absolute=False):
    for folder in ("textures", "library", "shots"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    texture_path = os.path.join(root, "textures", "paint.png")
    library_path = os.path.join(root, "library", "props.blend")
    shot_path = os.path.join(root, "shots", "shot.blend")

    scene = empty_file()
    write_texture(texture_path, rgb)
    prop = plane("Prop", 0.5)
    prop.data.materials.append(emission_material("Blue"))
    scene.collection.objects.link(prop)
    bpy.ops.wm.save_as_mainfile(filepath=library_path)

    scene = empty_file()
    bpy.ops.wm.save_as_mainfile(filepath=shot_path)  # saved first, so paths can be relative
    render_settings(scene)
    image = bpy.data.images.load(texture_path)
    image.filepath = texture_path if absolute else bpy.path.relpath(texture_path)
    painted = plane("Painted", -0.5)
    painted.data.materials.append(emission_material("Paint", image=image))
    scene.collection.objects.link(painted)
    with bpy.data.libraries.load(library_path, link=True, relative=True) as (source, linked):
        linked.objects = ["Prop"]
    scene.collection.objects.link(linked.objects[0])
    bpy.ops.wm.save_as_mainfile(filepath=shot_path)
    return shot_path


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    rgb = [float(c) for c in args[1].split(",")]
    print("shot", build(os.path.abspath(args[0]), rgb, absolute="absolute" in args[2:]))
