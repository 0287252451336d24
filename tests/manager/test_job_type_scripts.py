"""Only a job type lets a scene's own Python run on the runners; a submitter cannot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from manager.errors import InvalidInput
from manager.job_types import JobTypes, validate_settings
from manager.job_types.compile import author_tasks

METADATA = {"blend_file": "shot.blend", "blender_version": "5.0", "frames_per_render_task": 2}
ALLOWING_TYPE = """
JOB_TYPE = {"label": "Render with the scene's rigs", "settings": [
    {"key": "frames", "type": "string", "required": True},
]}


def compile_job(job):
    task = job.add_task("render", "blender", frames=[1])
    task.add_command("blender-render", blend_file="shot.blend", frames=[1], allow_scripts=True)
"""


def render_commands(authored: Any) -> list[dict[str, Any]]:
    return [
        command.parameters
        for task in authored.tasks
        for command in task.commands
        if command.name == "blender-render"
    ]


def test_built_in_job_types_never_allow_scripts_whatever_the_settings() -> None:
    job_type = JobTypes().get("simple-blender-render")
    assert job_type is not None
    # A submitter cannot even name the permission: it is no setting.
    given = {"frames": "1-4", "allow_scripts": True}
    problems = validate_settings(job_type.schema, given)[1]
    assert problems == ["allow_scripts: unknown setting for job type simple-blender-render"]
    bools = [spec.key for spec in job_type.schema.settings if spec.type == "bool"]
    assert bools == ["sessions"]
    choices = [spec.choices for spec in job_type.schema.settings if spec.key == "deliverable"][0]
    assert choices is not None
    for deliverable, *flags in itertools.product(choices, *[[True, False]] * len(bools)):
        given = {
            "frames": "1-4",
            "deliverable": deliverable,
            "fps": "24",
            **dict(zip(bools, flags, strict=True)),
        }
        settings, problems = validate_settings(job_type.schema, given)
        assert problems == []
        authored = author_tasks(job_type, name="shot", settings=settings, metadata=METADATA)
        commands = render_commands(authored)
        assert len(commands) == 2
        assert all(command.get("allow_scripts", False) is False for command in commands)


def test_a_job_type_an_admin_installed_allows_scripts(tmp_path: Path) -> None:
    (tmp_path / "rigged_render.py").write_text(ALLOWING_TYPE)
    job_type = JobTypes(tmp_path).get("rigged-render")
    assert job_type is not None
    authored = author_tasks(job_type, name="shot", settings={"frames": "1"}, metadata=METADATA)
    assert render_commands(authored) == [
        {"blend_file": "shot.blend", "frames": [1], "allow_scripts": True}
    ]


@pytest.mark.parametrize("value", ["false", 1, "yes"])
def test_allow_scripts_is_true_or_false_nothing_else(tmp_path: Path, value: object) -> None:
    (tmp_path / "rigged_render.py").write_text(
        ALLOWING_TYPE.replace("allow_scripts=True", f"allow_scripts={value!r}")
    )
    job_type = JobTypes(tmp_path).get("rigged-render")
    assert job_type is not None
    with pytest.raises(InvalidInput, match="allow_scripts must be True or False") as raised:
        author_tasks(job_type, name="shot", settings={"frames": "1"}, metadata=METADATA)
    assert raised.value.code == "compile_failed"
