"""Settings computed from their ``eval`` expression: names, types, order, toggles, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from manager.job_types import JobTypeError
from manager.job_types.registry import JobTypes
from manager.job_types.schema import parse_schema
from runner.blender import blender_env
from shared.setting_eval import (
    SettingEvalError,
    coerce,
    evaluate_settings,
    last_n_dir_parts,
)


def test_last_n_dir_parts_of_the_blend_and_of_a_given_path() -> None:
    blend = "/projects/film/shots/sh010/sh010.blend"
    assert last_n_dir_parts(2, None, blend_file=blend) == Path("shots/sh010")
    assert last_n_dir_parts(1, "/a/b/c/file.exr", blend_file=blend) == Path("c")
    assert last_n_dir_parts(9, PurePosixPath("/a/b/f"), blend_file=blend) == Path("/a/b")
    assert last_n_dir_parts(0, None, blend_file=blend) == Path()


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [(Path("a/b"), "string", "a/b"), (3.0, "int32", 3), (2, "float", 2.0), (1, "bool", True)],
)
def test_coerce_into_the_setting_type(value: Any, kind: str, expected: Any) -> None:
    result = coerce(value, kind)
    assert result == expected and type(result) is type(expected)


def test_coerce_refuses_a_fraction_for_a_whole_number() -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        coerce(2.5, "int32")


SPECS = [
    {"key": "frames", "type": "string", "eval": "f'{start}-{end}'", "eval_toggle": True},
    {"key": "count", "type": "int32", "eval": "len(settings['frames'])"},
    {"key": "note", "type": "string"},
]


def namespace(values: dict[str, Any]) -> dict[str, Any]:
    return {"start": 1, "end": 250, "settings": values}


def test_expressions_run_in_order_and_see_earlier_results() -> None:
    result = evaluate_settings(SPECS, {"note": "hi"}, namespace)
    assert result == {"frames": "1-250", "count": 5, "note": "hi"}


def test_a_setting_whose_auto_toggle_is_off_keeps_the_typed_value() -> None:
    result = evaluate_settings(SPECS, {"frames": "7"}, namespace, manual=frozenset({"frames"}))
    assert result["frames"] == "7" and result["count"] == 1
    # Only settings that offer the toggle can be switched to manual.
    result = evaluate_settings(SPECS, {"count": 99}, namespace, manual=frozenset({"count"}))
    assert result["count"] == 5


def test_a_failing_expression_names_the_setting_and_the_cause() -> None:
    specs = [{"key": "scene", "type": "string", "eval": "C.scene.name"}]
    with pytest.raises(SettingEvalError, match=r"setting 'scene'.*NameError.*'C'"):
        evaluate_settings(specs, {}, lambda values: {})


def test_the_schema_refuses_an_eval_that_is_not_an_expression() -> None:
    with pytest.raises(JobTypeError, match="eval of 'x' is not a Python expression"):
        parse_schema("t", {"settings": [{"key": "x", "type": "string", "eval": "x = 1"}]})
    with pytest.raises(JobTypeError, match="eval_toggle but no eval"):
        parse_schema("t", {"settings": [{"key": "x", "type": "string", "eval_toggle": True}]})


EVALUATE_IN_BLENDER = textwrap.dedent(
    """
    import json, sys
    import bpy
    from shared.setting_eval import eval_namespace, evaluate_settings

    bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 11, 42
    scene.render.fps, scene.render.fps_base = 30, 1.001
    specs = json.loads(sys.argv[2]) + [
        {"key": "out", "type": "string", "eval": "str(last_n_dir_parts(1) / jobname)"},
    ]
    values = evaluate_settings(
        specs,
        {},
        lambda values: eval_namespace(bpy, bpy.context, jobname="shot", settings=values),
    )
    print("RESULT " + json.dumps(values))
    """
)


@pytest.mark.blender
def test_the_built_in_type_evaluates_inside_real_blender(scene_bpy: Path, tmp_path: Path) -> None:
    specs = JobTypes(None).get("simple-blender-render")
    assert specs is not None
    settings = specs.schema.as_dict()["settings"]
    done = subprocess.run(
        [sys.executable, "-c", EVALUATE_IN_BLENDER, str(scene_bpy), json.dumps(settings)],
        env={**blender_env(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    values = json.loads(lines[0].removeprefix("RESULT "))
    assert values["frames"] == "11-42"
    assert values["scene"] == "Scene"
    assert values["fps"] == "29.97"
    assert values["out"] == f"{scene_bpy.parent.name}/shot"
