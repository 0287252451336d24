"""The ``JOB_TYPE`` schema: its settings, their checks, and the etag the add-on compares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from manager.job_types.authoring import JobTypeError

SETTING_TYPES = ("string", "int32", "float", "bool")
SUBTYPES = ("file_path", "dir_path", "file_name", "hashed_file_path")
VISIBILITY = ("visible", "submission", "web", "hidden")
INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class SettingSpec:
    key: str
    type: str
    subtype: str | None = None
    required: bool = False
    default: Any = None
    choices: list[Any] | None = None
    description: str = ""
    label: str = ""
    eval: str | None = None
    eval_toggle: bool = False
    """The add-on shows an "auto" toggle: off, the artist types the value instead."""
    visible: str = "visible"


@dataclass(frozen=True)
class JobTypeSchema:
    name: str
    label: str
    description: str
    settings: list[SettingSpec] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "settings": [asdict(s) for s in self.settings],
        }

    @property
    def etag(self) -> str:
        """Changes whenever the schema does; a form built from an older one is stale."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_schema(name: str, raw: Any) -> JobTypeSchema:
    """Check a module's ``JOB_TYPE`` and turn it into a JobTypeSchema."""
    if not isinstance(raw, dict):
        raise JobTypeError(f"job type {name}: JOB_TYPE must be a dict")
    settings = []
    seen = set()
    for index, entry in enumerate(raw.get("settings", [])):
        if not isinstance(entry, dict) or "key" not in entry or "type" not in entry:
            raise JobTypeError(f"job type {name}: setting {index} needs a 'key' and a 'type'")
        unknown = set(entry) - set(SettingSpec.__dataclass_fields__)
        if unknown:
            raise JobTypeError(
                f"job type {name}: setting {entry['key']!r} has unknown fields {sorted(unknown)}"
            )
        spec = SettingSpec(**entry)
        if spec.key in seen:
            raise JobTypeError(f"job type {name}: setting {spec.key!r} appears twice")
        seen.add(spec.key)
        if spec.type not in SETTING_TYPES:
            raise JobTypeError(
                f"job type {name}: setting {spec.key!r} has type {spec.type!r}; use {SETTING_TYPES}"
            )
        if spec.subtype is not None and spec.subtype not in SUBTYPES:
            raise JobTypeError(
                f"job type {name}: setting {spec.key!r} has subtype {spec.subtype!r}"
            )
        if spec.visible not in VISIBILITY:
            raise JobTypeError(
                f"job type {name}: setting {spec.key!r} has visible={spec.visible!r}"
            )
        if spec.eval is not None:
            try:
                compile(spec.eval, f"<{name}.{spec.key}.eval>", "eval")
            except SyntaxError as error:
                raise JobTypeError(
                    f"job type {name}: eval of {spec.key!r} is not a Python expression: {error}"
                ) from error
        elif spec.eval_toggle:
            raise JobTypeError(f"job type {name}: {spec.key!r} has eval_toggle but no eval")
        if spec.default is not None and _type_error(spec, spec.default):
            raise JobTypeError(f"job type {name}: default of {spec.key!r} is not a {spec.type}")
        settings.append(spec)
    return JobTypeSchema(
        name=name,
        label=str(raw.get("label", name)),
        description=str(raw.get("description", "")),
        settings=settings,
    )


def _type_error(spec: SettingSpec, value: Any) -> str | None:
    if spec.type == "string" and not isinstance(value, str):
        return "must be a string"
    if spec.type == "bool" and not isinstance(value, bool):
        return "must be true or false"
    if spec.type == "int32":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        if not INT32[0] <= value <= INT32[1]:
            return "is outside the 32-bit range"
    if spec.type == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "must be a number"
    return None


def validate_settings(
    schema: JobTypeSchema, given: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Settings with defaults filled in, and every problem found (empty when all is well)."""
    problems: list[str] = []
    known = {spec.key: spec for spec in schema.settings}
    for key in sorted(set(given) - set(known)):
        problems.append(f"{key}: unknown setting for job type {schema.name}")
    result: dict[str, Any] = {}
    for spec in schema.settings:
        if spec.key not in given or given[spec.key] is None:
            if spec.default is not None:
                result[spec.key] = spec.default
            elif spec.required:
                problems.append(f"{spec.key}: required")
            continue
        value = given[spec.key]
        if spec.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        error = _type_error(spec, value)
        if error:
            problems.append(f"{spec.key}: {error} (got {value!r})")
            continue
        if spec.choices is not None and value not in spec.choices:
            problems.append(f"{spec.key}: {value!r} is not one of {spec.choices}")
            continue
        result[spec.key] = value
    return result, problems
