"""Finding job types: the built-ins of the package, then an admin's folder that adds or
overrides types, re-read whenever a file in it changes (no restart needed)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from manager.job_types.authoring import AuthoredJob, JobTypeError
from manager.job_types.schema import JobTypeSchema, parse_schema

log = logging.getLogger(__name__)
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


@dataclass(frozen=True)
class JobType:
    schema: JobTypeSchema
    compile_job: Callable[[AuthoredJob], Any]
    source: Path

    @property
    def name(self) -> str:
        return self.schema.name


def _load(path: Path) -> JobType:
    name = path.stem.replace("_", "-")
    spec = importlib.util.spec_from_file_location(f"framefarm_job_type_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise JobTypeError(f"cannot load {path}")
    module = ModuleType(spec.name)
    module.__file__ = str(path)
    spec.loader.exec_module(module)
    raw = getattr(module, "JOB_TYPE", None)
    compile_job = getattr(module, "compile_job", None)
    if not callable(compile_job):
        raise JobTypeError(f"{path} has no compile_job(job) function")
    schema = parse_schema(str(raw.get("name", name)) if isinstance(raw, dict) else name, raw)
    return JobType(schema, compile_job, path)


class JobTypes:
    """All job types; ``folder`` (FRAMEFARM_JOB_TYPES_DIR) adds or overrides built-ins."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._types: dict[str, JobType] = {}
        self.broken: dict[str, str] = {}

    def _files(self) -> list[Path]:
        files = sorted(p for p in BUILTIN_DIR.glob("*.py") if not p.name.startswith("_"))
        if self.folder is not None and self.folder.is_dir():
            files += sorted(p for p in self.folder.glob("*.py") if not p.name.startswith("_"))
        return files

    def _refresh(self) -> None:
        files = self._files()
        stamp = tuple((str(p), p.stat().st_mtime) for p in files)
        if stamp == self._stamp:
            return
        types: dict[str, JobType] = {}
        broken: dict[str, str] = {}
        for path in files:
            try:
                job_type = _load(path)
            except Exception as exc:  # a broken user type must not take the others down
                broken[str(path)] = f"{type(exc).__name__}: {exc}"
                log.error("job type %s is broken: %s", path, exc)
                continue
            types[job_type.name] = job_type
        self._types, self.broken, self._stamp = types, broken, stamp

    def all(self) -> list[JobType]:
        with self._lock:
            self._refresh()
            return sorted(self._types.values(), key=lambda t: t.name)

    def get(self, name: str) -> JobType | None:
        with self._lock:
            self._refresh()
            return self._types.get(name)
