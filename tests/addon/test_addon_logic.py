"""The add-on's plain-Python parts: the settings form, online access, scene facts, packing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from addon.client import ManagerRefused, raise_for_answer
from addon.online_access import online_access_problem
from addon.packing import pack_blend, project_root
from addon.scene_info import missing_files, scene_problems, scene_summary
from addon.settings_form import form_rows, submitted_settings
from addon.ui_state import FarmState
from manager.job_types.builtin import simple_blender_render
from manager.job_types.schema import parse_schema
from shared.setting_eval import SettingEvalError, eval_namespace
from tests.addon.conftest import build_textured_project

SPECS = parse_schema("simple-blender-render", simple_blender_render.JOB_TYPE).as_dict()["settings"]
TOGGLED = [
    {"key": "out", "type": "string", "eval": "'/auto/' + jobname", "eval_toggle": True},
    {"key": "count", "type": "int32", "eval": "C.scene.frame_end * 2"},
    {"key": "note", "type": "string", "visible": "web"},
]


def stand_in_scene(**render: object) -> SimpleNamespace:
    settings = {
        "fps": 30000,
        "fps_base": 1001.0,
        "resolution_x": 1920,
        "resolution_y": 1080,
        "resolution_percentage": 50,
        "engine": "CYCLES",
        "film_transparent": True,
        "image_settings": SimpleNamespace(file_format="OPEN_EXR"),
    }
    settings.update(render)
    return SimpleNamespace(
        name="Shot",
        frame_start=1,
        frame_end=48,
        frame_step=2,
        camera=SimpleNamespace(name="CamA"),
        view_layers=[SimpleNamespace(name="Fg", use=True), SimpleNamespace(name="Bg", use=False)],
        render=SimpleNamespace(**settings),
    )


def namespace_for(scene: SimpleNamespace):  # type: ignore[no-untyped-def]
    bpy = SimpleNamespace(
        data=SimpleNamespace(filepath="/p/shots/sh010/sh010.blend"),
        path=SimpleNamespace(abspath=lambda p, **k: p),
    )
    context = SimpleNamespace(scene=scene)
    return lambda values: eval_namespace(bpy, context, jobname="sh010", settings=values)


def test_the_builtin_schema_makes_a_form_and_evaluates_against_the_scene():
    rows = form_rows(SPECS)
    keys = [row["key"] for row in rows]
    assert "blend_file" not in keys  # hidden
    assert keys[:4] == ["frames", "chunk_size", "scene", "deliverable"]
    by_key = {row["key"]: row for row in rows}
    assert by_key["deliverable"]["choices"][0] == "EXR" and by_key["deliverable"]["value"] == "EXR"
    assert by_key["chunk_size"]["optional"] and not by_key["frames"]["optional"]

    scene = stand_in_scene()
    settings = submitted_settings(SPECS, rows, namespace_for(scene))
    assert settings == {
        "frames": "1-48",
        "scene": "Shot",
        "deliverable": "EXR",
        "fps": "29.97",
        "sessions": True,
    }

    by_key["chunk_size"].update(enabled=True, value=5)
    by_key["deliverable"]["value"] = "EXR_264_MP4"
    settings = submitted_settings(SPECS, rows, namespace_for(scene))
    assert settings["chunk_size"] == 5 and settings["deliverable"] == "EXR_264_MP4"


def test_the_auto_toggle_and_values_kept_across_a_refresh():
    rows = form_rows(TOGGLED)
    assert [row["key"] for row in rows] == ["out", "count"]
    scene = stand_in_scene()
    assert submitted_settings(TOGGLED, rows, namespace_for(scene)) == {
        "out": "/auto/sh010",
        "count": 96,
    }
    rows[0].update(auto=False, value="/typed")
    assert submitted_settings(TOGGLED, rows, namespace_for(scene))["out"] == "/typed"
    kept = form_rows(TOGGLED, {row["key"]: row for row in rows})
    assert kept[0]["auto"] is False and kept[0]["value"] == "/typed"
    retyped = form_rows([{**TOGGLED[0], "type": "int32"}], {row["key"]: row for row in rows})
    assert retyped[0]["value"] == 0 and retyped[0]["auto"] is True  # a new type starts afresh


def test_a_failing_expression_names_its_setting():
    broken = [{"key": "frames", "type": "string", "eval": "C.scene.no_such_thing"}]
    with pytest.raises(SettingEvalError, match="'frames'"):
        submitted_settings(broken, form_rows(broken), namespace_for(stand_in_scene()))


@pytest.mark.parametrize(
    ("url", "online", "allowed"),
    [
        ("http://127.0.0.1:8080", False, True),
        ("http://localhost:8080", False, True),
        ("http://192.168.1.20:8080", False, True),
        ("http://[::1]:8080", False, True),
        ("http://farm.local:8080", False, True),
        ("http://farm.example.invalid:8080", False, False),
        ("http://farm.example.invalid:8080", True, True),
    ],
)
def test_online_access_guards_only_hosts_outside_the_studio(url: str, online: bool, allowed: bool):
    problem = online_access_problem(url, online)
    assert (problem is None) == allowed
    if not allowed:
        assert "Allow Online Access" in str(problem)


def test_the_scene_summary_reads_what_the_render_will_use():
    rows = dict(scene_summary(stand_in_scene(), "5.0.1"))
    assert rows["Frames"] == "1-48, step 2"
    assert rows["Frame rate"] == "29.97 fps"
    assert rows["Resolution"] == "1920x1080 at 50% = 960x540"
    assert rows["Camera"] == "CamA" and rows["View layers"] == "Fg"
    assert rows["Output"] == "OPEN_EXR" and rows["Transparent film"] == "yes"
    assert scene_problems(stand_in_scene()) == []
    no_camera = stand_in_scene()
    no_camera.camera = None
    assert "no camera" in scene_problems(no_camera)[0]


def test_missing_files_are_named(tmp_path: Path):
    (tmp_path / "here.png").write_bytes(b"x")
    files = [("images", "Here", str(tmp_path / "here.png")), ("libraries", "L", "/gone.blend")]
    assert missing_files(files) == ["library 'L': /gone.blend not found"]


def test_errors_from_the_manager_keep_its_code_and_message():
    with pytest.raises(ManagerRefused, match="invalid_settings.*frames"):
        raise_for_answer(422, b'{"code": "invalid_settings", "message": "frames is required"}')
    with pytest.raises(ManagerRefused, match="bad gateway"):
        raise_for_answer(502, b"bad gateway")
    raise_for_answer(201, b"")


def test_project_root_is_the_common_folder_but_never_the_filesystem_root():
    blend = Path("/p/shots/a.blend")
    assert project_root(blend, [Path("/p/textures/t.png")]) == Path("/p")
    assert project_root(blend, []) == Path("/p/shots")
    assert project_root(blend, [Path("/elsewhere/t.png")]) == Path("/p/shots")


def test_packing_a_copy_renames_it_and_reports_missing_files(
    textured_project: Path, tmp_path: Path
):
    shot = textured_project / "shots" / "shot.blend"
    copy = shot.with_name(".framefarm-submit-1234.blend")
    copy.write_bytes(shot.read_bytes())
    (textured_project / "textures" / "paint.png").unlink()
    pack = pack_blend(copy, tmp_path / "staging", name="shot.blend")
    assert pack.blend_file == "shots/shot.blend"
    assert [f.path for f in pack.files] == ["library/props.blend", "shots/shot.blend"]
    assert {f.path: f.source for f in pack.files}["shots/shot.blend"] == copy
    assert pack.missing == [textured_project / "textures" / "paint.png"]


def test_my_jobs_refresh_only_while_the_panel_is_seen_and_not_too_often():
    farm = FarmState()
    assert not farm.jobs_refresh_due(now=100.0)  # never drawn
    farm.jobs_panel_seen_at = 99.0
    assert farm.jobs_refresh_due(now=100.0)
    farm.jobs_fetched_at = 99.5
    assert not farm.jobs_refresh_due(now=100.0)  # fetched half a second ago
    assert farm.jobs_refresh_due(now=102.6)
    assert not farm.jobs_refresh_due(now=110.0)  # the panel has not been drawn for 11 s


def test_an_absolute_texture_path_is_rewritten_relative_in_a_copy(tmp_path: Path):
    from blender_asset_tracer import trace

    project = build_textured_project(tmp_path / "project", "absolute")
    shot = project / "shots" / "shot.blend"
    before = shot.read_bytes()
    pack = pack_blend(shot, tmp_path / "staging")
    sources = {f.path: f.source for f in pack.files}
    assert sorted(sources) == ["library/props.blend", "shots/shot.blend", "textures/paint.png"]
    rewritten = sources["shots/shot.blend"]
    assert rewritten.parent == tmp_path / "staging" and shot.read_bytes() == before
    paths = {u.asset_path.decode() for u in trace.deps(rewritten)}
    assert paths == {"//../textures/paint.png", "//../library/props.blend"}


def test_a_compressed_shot_with_a_cache_in_another_folder_packs_with_relative_paths(
    tmp_path: Path,
):
    from blender_asset_tracer import trace

    project = build_textured_project(tmp_path / "project", "absolute", "cached", "compressed")
    shot = project / "shots" / "shot.blend"
    assert shot.read_bytes()[:4] == bytes.fromhex("28b52ffd")  # zstd, as Blender 3.0+ saves
    pack = pack_blend(shot, tmp_path / "staging")
    sources = {f.path: f.source for f in pack.files}
    assert sorted(sources) == ["caches/prop.pc2", "shots/shot.blend", "textures/paint.png"]
    assert sources["caches/prop.pc2"] == project / "caches" / "prop.pc2"
    assert pack.missing == []
    usages = {
        (u.block_name.decode(), u.asset_path.decode()) for u in trace.deps(sources[pack.blend_file])
    }
    assert usages == {
        ("IMpaint.png", "//../textures/paint.png"),
        ("OBCached.modifiers[0]", "//../caches/prop.pc2"),
    }
