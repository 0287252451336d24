"""The job-settings form built from a job type's schema, and the settings it submits (no bpy).

A row per setting the artist may see (``visible`` or ``submission``). A setting with
``eval`` is computed at submit time; with ``eval_toggle`` it has an "auto" switch, and
off, the artist's value is sent instead. An optional setting without a default has a
"set" switch: off, it is not sent and the manager applies its own default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .farm_shared import setting_eval

FORM_VISIBILITY = ("visible", "submission")
EMPTY = {"string": "", "int32": 0, "float": 0.0, "bool": False}


def form_rows(
    specs: list[Mapping[str, Any]], previous: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Rows for the form; values the artist typed before survive a schema refresh."""
    previous = previous or {}
    rows = []
    for spec in specs:
        if spec.get("visible", "visible") not in FORM_VISIBILITY:
            continue
        key, kind = str(spec["key"]), str(spec["type"])
        default = spec.get("default")
        row = {
            "key": key,
            "type": kind,
            "label": spec.get("label") or key.replace("_", " ").capitalize(),
            "description": spec.get("description") or "",
            "choices": [str(c) for c in spec.get("choices") or []],
            "has_eval": bool(spec.get("eval")),
            "eval_toggle": bool(spec.get("eval_toggle")),
            "optional": not spec.get("required") and default is None and not spec.get("eval"),
            "auto": True,
            "enabled": False,
            "value": EMPTY[kind] if default is None else default,
        }
        old = previous.get(key)
        if old is not None and old.get("type") == kind:
            for name in ("auto", "enabled", "value"):
                row[name] = old[name]
        rows.append(row)
    return rows


def submitted_settings(
    specs: list[Mapping[str, Any]],
    rows: list[Mapping[str, Any]],
    namespace_for: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """The settings to send: typed values, then every ``eval`` computed in schema order.

    Raises ``setting_eval.SettingEvalError`` naming a setting whose expression failed.
    """
    settings: dict[str, Any] = {}
    manual: set[str] = set()
    for row in rows:
        key = row["key"]
        if row["has_eval"]:
            if row["eval_toggle"] and not row["auto"]:
                manual.add(key)
                settings[key] = row["value"]
            continue
        if row["optional"] and not row["enabled"]:
            continue
        if row["type"] == "string" and row["value"] == "" and row["optional"]:
            continue
        settings[key] = row["value"]
    return setting_eval.evaluate_settings(
        list(specs), settings, namespace_for, manual=frozenset(manual)
    )
