"""What a job type module writes: its ``JOB_TYPE`` schema and the tasks ``compile_job`` adds.

A job type is a Python module with::

    JOB_TYPE = {"label": …, "description": …, "settings": [{"key": …, "type": …}, …]}

    def compile_job(job: AuthoredJob) -> None:
        render = job.add_task("render-1-10", "blender")
        render.add_command("blender-render", blend_file=…, frames=[…])  # allow_scripts=True
        # lets the scene's own Python (drivers, registered text blocks) run on the runner
        encode = job.add_task("encode", "ffmpeg")
        encode.depends_on(render)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASK_TYPES = ("blender", "ffmpeg", "file-management", "misc")


class JobTypeError(Exception):
    """A job type that is broken, or a job it cannot compile; the message says why."""


@dataclass
class AuthoredCommand:
    name: str
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "parameters": self.parameters}


@dataclass(eq=False)
class AuthoredTask:
    name: str
    type: str
    frames: list[int] = field(default_factory=list)
    capability: str | None = None
    commands: list[AuthoredCommand] = field(default_factory=list)
    dependencies: list[AuthoredTask] = field(default_factory=list)

    def add_command(self, name: str, **parameters: Any) -> AuthoredCommand:
        # Letting a scene's own Python run on the runners is the job type's decision alone,
        # spelled out as a bool: a string like "false" must not read as yes.
        allow_scripts = parameters.get("allow_scripts")
        if name == "blender-render" and not isinstance(allow_scripts, bool | None):
            raise JobTypeError(
                f"task {self.name!r}: blender-render's allow_scripts must be True or False, "
                f"not {allow_scripts!r}"
            )
        command = AuthoredCommand(name, parameters)
        self.commands.append(command)
        return command

    def depends_on(self, *tasks: AuthoredTask) -> None:
        self.dependencies.extend(tasks)


@dataclass
class AuthoredJob:
    """The job as ``compile_job`` sees it: its name, settings and metadata, and its tasks."""

    name: str
    settings: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    tasks: list[AuthoredTask] = field(default_factory=list)

    def add_task(
        self,
        name: str,
        task_type: str,
        *,
        frames: list[int] | None = None,
        capability: str | None = None,
    ) -> AuthoredTask:
        """Add a task; ``capability`` names what its runner must have (e.g. an encoder)."""
        if task_type not in TASK_TYPES:
            raise JobTypeError(f"task {name!r}: unknown task type {task_type!r}; use {TASK_TYPES}")
        if any(task.name == name for task in self.tasks):
            raise JobTypeError(f"two tasks are named {name!r}; task names must be unique")
        task = AuthoredTask(name, task_type, list(frames or []), capability)
        self.tasks.append(task)
        return task


def ordered_tasks(job: AuthoredJob) -> list[AuthoredTask]:
    """The tasks, each after its dependencies; a cycle is refused."""
    known = {id(task) for task in job.tasks}
    for task in job.tasks:
        for dependency in task.dependencies:
            if id(dependency) not in known:
                raise JobTypeError(
                    f"task {task.name!r} depends on {dependency.name!r}, which is not in this job"
                )
    done: set[int] = set()
    visiting: list[AuthoredTask] = []
    result: list[AuthoredTask] = []

    def visit(task: AuthoredTask) -> None:
        if id(task) in done:
            return
        if task in visiting:
            cycle = visiting[visiting.index(task) :] + [task]
            raise JobTypeError("dependency cycle: " + " -> ".join(t.name for t in cycle))
        visiting.append(task)
        for dependency in task.dependencies:
            visit(dependency)
        visiting.pop()
        done.add(id(task))
        result.append(task)

    for task in job.tasks:
        visit(task)
    return result
