"""Job settings computed at submit time from their ``eval`` expression, inside Blender.

A job type's setting may carry ``eval``, a Python expression such as
``f'{C.scene.frame_start}-{C.scene.frame_end}'``. The add-on evaluates it against the open
scene when the artist submits, with these names: ``bpy``, ``C`` (the context), ``Path``,
``abspath`` (Blender's ``bpy.path.abspath``), ``jobname``, ``settings`` (the values so far)
and ``last_n_dir_parts(n, file_path=None)``. Nothing here imports ``bpy``: the module is
passed in, so plain pytest covers this with a stand-in and the add-on with the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

SETTING_TYPES = {"string": str, "int32": int, "float": float, "bool": bool}


class SettingEvalError(ValueError):
    """An ``eval`` expression failed; the message names the setting and the cause."""


def last_n_dir_parts(n: int, file_path: str | PurePath | None, *, blend_file: str) -> Path:
    """The last ``n`` folder names above ``file_path`` (default: the .blend), as a path.

    ``last_n_dir_parts(2)`` for ``/projects/film/shots/sh010/sh010.blend`` is
    ``shots/sh010`` — handy for mirroring a project's layout in the output folder.
    """
    if n <= 0:
        return Path()
    path = Path(file_path if file_path is not None else blend_file)
    return Path(*path.parent.parts[-n:])


def eval_namespace(
    bpy: Any, context: Any, *, jobname: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The names an ``eval`` expression sees."""
    blend_file = str(bpy.data.filepath)

    def last_parts(n: int, file_path: str | PurePath | None = None) -> Path:
        return last_n_dir_parts(n, file_path, blend_file=blend_file)

    abspath: Callable[..., str] = bpy.path.abspath
    return {
        "bpy": bpy,
        "C": context,
        "Path": Path,
        "abspath": abspath,
        "jobname": jobname,
        "settings": settings,
        "last_n_dir_parts": last_parts,
    }


def coerce(value: Any, setting_type: str) -> Any:
    """Turn an evaluated value into the setting's type (paths and numbers into strings, …)."""
    if setting_type == "string":
        return str(value)
    if setting_type == "bool":
        return bool(value)
    if setting_type == "int32":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    if setting_type == "float":
        return float(value)
    raise ValueError(f"unknown setting type {setting_type!r}")


def evaluate_settings(
    specs: list[Mapping[str, Any]],
    settings: Mapping[str, Any],
    namespace_for: Callable[[Mapping[str, Any]], dict[str, Any]],
    *,
    manual: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``settings`` with every ``eval`` setting computed, in schema order.

    ``specs`` are the job type's settings as the manager lists them; ``manual`` names the
    settings whose "auto" toggle the artist turned off (only settings with ``eval_toggle``
    have one), which keep the typed value. Each expression sees the values computed before
    it. Raises SettingEvalError naming the first setting that failed.
    """
    values = dict(settings)
    for spec in specs:
        expression = spec.get("eval")
        key = str(spec["key"])
        if not expression or (spec.get("eval_toggle") and key in manual):
            continue
        try:
            # The expression comes from a job type an admin installed on the manager, and runs
            # in the artist's own Blender, like Flamenco's job settings.
            result = eval(expression, namespace_for(values))
            values[key] = coerce(result, str(spec["type"]))
        except Exception as error:  # any failure is the expression's
            raise SettingEvalError(
                f"setting {key!r}: could not compute {expression!r}: "
                f"{type(error).__name__}: {error}"
            ) from error
    return values
