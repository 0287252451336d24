"""Build a project whose shot uses a texture and a library in other folders (runs in Blender).

    project/textures/paint.png     8x8 PNG of one colour
    project/library/props.blend    object "Prop": a plane with a blue emission material
    project/shots/shot.blend       a plane on the left showing paint.png (emission), the
                                   linked "Prop" on the right, an orthographic camera above

A 64x64 render shows the texture's colour at pixel (32, 16) and blue at (32, 48). The
texture and library are referenced by relative paths (``//../textures/paint.png``).
Usage: ``python textured_scene.py ROOT R,G,B [absolute] [cached] [compressed]`` (or
``blender -b -P … -- …``). ``absolute`` keeps the texture's path absolute. ``cached``
replaces the library with a cache in another folder, referenced by its absolute path:

    project/caches/prop.pc2        a Mesh Cache (point cache 2) holding the plane on the right
    project/shots/shot.blend       object "Cached": a blue plane whose own vertices lie outside
                                   the camera's view; its Mesh Cache modifier reads prop.pc2

so the right half is blue only when the cache was found. ``compressed`` saves the shot
with Blender's file compression (zstd since Blender 3.0).
Also importable inside Blender: ``write_texture(path, rgb)``.
"""

import os
import struct
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


def write_pc2(path, vertices, samples=3):
    """A point cache 2 file (the format of Blender's .pc2 exporter): the same vertex
    positions for frames 0 to ``samples - 1``."""
    with open(path, "wb") as f:
        f.write(struct.pack("<12siiffi", b"POINTCACHE2\0", 1, len(vertices), 0.0, 1.0, samples))
        for _ in range(samples):
            for vertex in vertices:
                f.write(struct.pack("<3f", *vertex))


def cached_plane(cache_path):
    """The "Cached" plane: its mesh far off to the side, moved on screen by the cache."""
    obj = plane("Cached", 0.0)
    on_screen = [(v.co.x + 0.5, v.co.y, v.co.z) for v in obj.data.vertices]
    write_pc2(cache_path, on_screen)
    for vertex in obj.data.vertices:
        vertex.co.x += 10.0
    modifier = obj.modifiers.new("Cache", "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = cache_path
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    modifier.frame_start = 0.0
    obj.data.materials.append(emission_material("Blue"))
    return obj


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


def build(root, rgb, absolute=False, cached=False, compressed=False):
    folders = ("textures", "caches" if cached else "library", "shots")
    for folder in folders:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    texture_path = os.path.join(root, "textures", "paint.png")
    library_path = os.path.join(root, "library", "props.blend")
    cache_path = os.path.join(root, "caches", "prop.pc2")
    shot_path = os.path.join(root, "shots", "shot.blend")

    scene = empty_file()
    write_texture(texture_path, rgb)
    if not cached:
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
    if cached:
        scene.collection.objects.link(cached_plane(cache_path))
    else:
        with bpy.data.libraries.load(library_path, link=True, relative=True) as (source, linked):
            linked.objects = ["Prop"]
        scene.collection.objects.link(linked.objects[0])
    if compressed:
        bpy.ops.wm.save_as_mainfile(filepath=shot_path, compress=True)
    else:  # Blender's default: plain in 3.4
        bpy.ops.wm.save_as_mainfile(filepath=shot_path)
    return shot_path


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    rgb = [float(c) for c in args[1].split(",")]
    options = args[2:]
    shot = build(
        os.path.abspath(args[0]),
        rgb,
        absolute="absolute" in options,
        cached="cached" in options,
        compressed="compressed" in options,
    )
    print("shot", shot)
