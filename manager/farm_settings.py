"""Runtime configuration kept in the database and changed by admins.

Each setting has a name, a default and a parser; ``framefarm manager config`` and the admin
API read and write them through here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from manager.models import FarmSetting, utcnow


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: Any
    parse: Callable[[str], Any]
    description: str
    secret: bool = False


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError("must be above 0 and at most 1")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on", "enable", "enabled"):
        return True
    if lowered in ("0", "false", "no", "off", "disable", "disabled"):
        return False
    raise ValueError("must be true or false")


def _timeout_policy(text: str) -> str:
    if text not in ("requeue", "fail"):
        raise ValueError("must be 'requeue' or 'fail'")
    return text


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


SPECS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in (
        SettingSpec("frames-per-render-task", 1, _positive_int, "frames in one render task"),
        SettingSpec(
            "task-fail-threshold",
            3,
            _positive_int,
            "different runners that must fail a task before it fails for good",
        ),
        SettingSpec(
            "blocklist-threshold",
            3,
            _positive_int,
            "failed tasks of one job after which a runner gets no more of its tasks",
        ),
        SettingSpec(
            "job-fail-ratio", 0.1, _ratio, "share of failed tasks at which a whole job fails"
        ),
        SettingSpec(
            "task-timeout",
            0.0,
            _non_negative_float,
            "seconds without progress before a task times out (0: never)",
        ),
        SettingSpec(
            "task-timeout-policy",
            "requeue",
            _timeout_policy,
            "what a timed-out task does: requeue or fail",
        ),
    )
}


def register_setting(spec: SettingSpec) -> None:
    """Other parts of the manager (auth) add their settings here at import time."""
    SPECS[spec.name] = spec


def _spec(name: str) -> SettingSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown setting {name!r}; known: {', '.join(sorted(SPECS))}") from None


def get_setting(session: Session, name: str) -> Any:
    spec = _spec(name)
    row = session.get(FarmSetting, name)
    return spec.default if row is None else row.value


def set_setting(session: Session, name: str, value: Any) -> Any:
    """Store ``value`` (a string is parsed by the setting's parser); return what was stored."""
    spec = _spec(name)
    if isinstance(value, str):
        try:
            value = spec.parse(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
    row = session.get(FarmSetting, name) or FarmSetting(key=name)
    row.value = value
    row.updated_at = utcnow()
    session.add(row)
    return value


def all_settings(session: Session) -> dict[str, Any]:
    return {name: get_setting(session, name) for name in sorted(SPECS)}


MASK = "********"


def masked_value(spec: SettingSpec, value: Any) -> Any:
    """A value fit to show: a secret setting hides its secrets (in a dictionary, only the
    entries whose names say ``secret``, so client IDs and URLs stay readable)."""
    if not spec.secret or value is None:
        return value
    return _mask_secrets(value) if isinstance(value, dict) else MASK


def _mask_secrets(value: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, item in value.items():
        if "secret" in key:
            shown[key] = MASK
        elif isinstance(item, dict):
            shown[key] = _mask_secrets(item)
        else:
            shown[key] = item
    return shown
