"""Submitting from the browser: pick a .blend, see what it will render, fill the job type's
form, submit.

The file is read with blender-asset-tracer (no Blender runs) and the form of each job type is
generated from its ``JOB_TYPE`` schema; the page then posts the job to ``POST /api/jobs``,
the same endpoint the add-on and scripts use, so there is one way to make a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import HTMLResponse

from manager.deps import JobTypesDep, SessionDep, SettingsDep, StorageDep
from manager.farm_settings import get_setting
from manager.job_types import JobTypes
from manager.job_types.schema import JobTypeSchema, SettingSpec
from manager.submission import DEFAULT_JOB_TYPE
from manager.web.access import WebUser
from manager.web.blendinfo import BlendInfo, read_blend_info
from manager.web.templating import render

router = APIRouter(include_in_schema=False)

SHOWN_IN_FORMS = ("visible", "submission", "web")
INPUT_TYPES = {"string": "text", "int32": "number", "float": "number", "bool": "checkbox"}


@dataclass(frozen=True)
class FormField:
    """One setting of a job type, as the form shows it."""

    key: str
    label: str
    setting_type: str  # string, int32, float, bool
    input_type: str  # text, number, checkbox, select
    value: Any
    choices: list[Any]
    required: bool
    description: str


@dataclass(frozen=True)
class JobTypeForm:
    name: str
    label: str
    description: str
    etag: str
    fields: list[FormField]


def _prefill(spec: SettingSpec, info: BlendInfo | None) -> Any:
    """What the .blend says for the settings it knows; else the schema's default."""
    from_blend = {}
    if info is not None:
        from_blend = {"frames": info.frames, "scene": info.scene, "fps": f"{info.fps:g}"}
    value = from_blend.get(spec.key, spec.default)
    if spec.type != "string" and isinstance(value, str):
        return spec.default
    return value


def form_fields(schema: JobTypeSchema, info: BlendInfo | None) -> list[FormField]:
    fields = []
    for spec in schema.settings:
        if spec.visible not in SHOWN_IN_FORMS:
            continue
        fields.append(
            FormField(
                key=spec.key,
                label=spec.label or spec.key.replace("_", " ").capitalize(),
                setting_type=spec.type,
                input_type="select" if spec.choices else INPUT_TYPES[spec.type],
                value=_prefill(spec, info),
                choices=list(spec.choices or []),
                required=spec.required,
                description=spec.description,
            )
        )
    return fields


def job_type_forms(job_types: JobTypes, info: BlendInfo | None) -> list[JobTypeForm]:
    forms = [
        JobTypeForm(
            name=t.schema.name,
            label=t.schema.label,
            description=t.schema.description,
            etag=t.schema.etag,
            fields=form_fields(t.schema, info),
        )
        for t in job_types.all()
    ]
    # the default type first, so a plain render needs no choice
    return sorted(forms, key=lambda f: (f.name != DEFAULT_JOB_TYPE, f.label))


@router.get("/jobs/new", response_class=HTMLResponse)
def submit_page(request: Request, user: WebUser) -> HTMLResponse:
    return render(request, "submit.html", {"user": user})


@router.post("/jobs/new/inspect", response_class=HTMLResponse)
def inspect_blend(
    request: Request,
    user: WebUser,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    job_types: JobTypesDep,
    file: Annotated[UploadFile, File()],
) -> HTMLResponse:
    """Read the chosen .blend's render settings and build the job forms prefilled from them."""
    with storage.temp_file() as (temp, temp_path):
        storage.copy_to_temp(file.file, temp, max_bytes=settings.max_upload_bytes)
        info = read_blend_info(temp_path)
    return render(
        request,
        "_submit_fields.html",
        {
            "info": info,
            "forms": job_type_forms(job_types, info),
            "filename": Path(file.filename or "scene.blend").name,
            "default_chunk": int(get_setting(session, "frames-per-render-task")),
        },
    )
