"""The commands a task is made of, by name; each checks its own parameters.

blender-render, frames-to-video, echo, sleep, make-directory, copy-file, move-directory, exec.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.blender import BlenderBackend
from runner.board import RunnerBoard
from runner.client import ManagerClient
from runner.devices import DeviceChoice
from runner.errors import RunnerError
from runner.progress import TaskProgress
from runner.renderer import ProcessRenderer, Renderer
from runner.session import SessionPool
from runner.versions import BlenderShelf
from runner.workspace import Workspace

log = logging.getLogger("framefarm.runner")


class CommandFailed(RunnerError):
    """A command could not do its work; the message is the task's failure reason."""


class BadParameters(CommandFailed):
    """The job type gave a command parameters it does not take."""


@dataclass
class TaskContext:
    client: ManagerClient
    workspace: Workspace
    task: dict[str, Any]
    progress: TaskProgress
    stop: threading.Event
    backend: BlenderBackend | None = None
    ffmpeg: str | None = None
    threads: int | None = None
    board: RunnerBoard = field(default_factory=RunnerBoard)
    slot: int = 0
    device: DeviceChoice = field(default_factory=DeviceChoice)
    blenders: BlenderShelf | None = None
    sessions: SessionPool | None = None
    _files: Path | None = field(default=None, repr=False)
    _out: Path | None = field(default=None, repr=False)

    @property
    def task_id(self) -> int:
        return int(self.task["id"])

    @property
    def job(self) -> dict[str, Any]:
        job: dict[str, Any] = self.task["job"]
        return job

    @property
    def job_id(self) -> int:
        return int(self.job["id"])

    def files_dir(self) -> Path:
        """The job's files, fetched into the workspace on first use."""
        if self._files is None:
            self._files = self.workspace.prepare_job(self.client, self.job)
        return self._files

    def blender_for_job(self) -> BlenderBackend:
        """The Blender that matches the version the job's scene was saved with."""
        if self.blenders is not None:
            return self.blenders.for_version(str(self.job.get("blender_version") or ""))
        if self.backend is None:
            raise CommandFailed("this runner has no Blender")
        return self.backend

    def renderer_for_job(self, *, sessions: bool = True) -> Renderer:
        """How this task's frames get rendered: in the slot's Blender session kept for the
        job, or a Blender process per task when sessions are off (job setting, runner flag)."""
        backend = self.blender_for_job()
        if sessions and self.sessions is not None:
            return self.sessions.renderer(backend, self.job_id)
        return ProcessRenderer(backend)

    def out_dir(self) -> Path:
        if self._out is None:
            self._out = self.workspace.task_output_dir(self.job_id, self.task_id)
        return self._out


Command = Callable[[TaskContext, dict[str, Any]], None]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(function: Command) -> Command:
        COMMANDS[name] = function
        return function

    return register


def run_command(ctx: TaskContext, spec: dict[str, Any]) -> None:
    name = spec.get("name")
    function = COMMANDS.get(str(name))
    if function is None:
        raise CommandFailed(f"this runner has no {name!r} command; known: {sorted(COMMANDS)}")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadParameters(f"{name}: parameters must be an object")
    function(ctx, parameters)


def param(parameters: dict[str, Any], key: str, kind: type, *, command_name: str) -> Any:
    """A required parameter of the given type, or BadParameters naming it."""
    value = parameters.get(key)
    if value is None or (kind is not float and not isinstance(value, kind)):
        raise BadParameters(f"{command_name}: parameter {key!r} must be a {kind.__name__}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise BadParameters(f"{command_name}: parameter {key!r} must be a number")
    return value


# Registers the commands.
from runner.commands import blender_render, files, misc, video  # noqa: E402, F401
