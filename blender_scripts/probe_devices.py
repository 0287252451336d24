"""List the Cycles render devices this Blender can use, as one JSON event.

Runs inside Blender (bpy + stdlib only), on Blender 3.4 up to bpy 5.0:

    blender -b --factory-startup -P probe_devices.py
    python probe_devices.py          # bpy module

Prints ``@framefarm {"event": "devices", "devices": [...]}``: one entry per device with
``type`` (CPU, CUDA, OPTIX, HIP, ONEAPI, METAL), ``name`` and ``id``. A GPU type whose
driver is missing simply has no entries (Blender prints "CUEW initialization failed").
"""

import json
import sys

import bpy

EVENT_PREFIX = "@framefarm "
GPU_TYPES = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


def emit(event, **data):
    print(EVENT_PREFIX + json.dumps({"event": event, **data}, separators=(",", ":")), flush=True)


def cycles_preferences():
    addon = bpy.context.preferences.addons.get("cycles")
    if addon is None:
        import addon_utils

        addon_utils.enable("cycles", default_set=True)
        addon = bpy.context.preferences.addons["cycles"]
    return addon.preferences


def list_devices():
    prefs = cycles_preferences()
    found = {}
    offered = {item[0] for item in prefs.get_device_types(bpy.context)}
    for device_type in ("CPU", *GPU_TYPES):
        if device_type != "CPU" and device_type not in offered:
            continue
        try:
            devices = prefs.get_devices_for_type(device_type)
        except (ValueError, TypeError, RuntimeError):
            continue
        for device in devices:
            # Each GPU type lists the CPU too (for hybrid rendering): keep one CPU entry.
            kind = device.type
            if kind not in ("CPU", device_type):
                continue
            found[(kind, device.id)] = {"type": kind, "name": device.name, "id": device.id}
    return list(found.values())


def main():
    try:
        devices = list_devices()
    except Exception as exc:
        emit("error", message=f"cannot list Cycles devices: {type(exc).__name__}: {exc}")
        return 1
    emit("devices", devices=devices)
    return 0


if __name__ == "__main__":
    status = main()
    if status:
        sys.exit(status)
