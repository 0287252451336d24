"""make-directory, copy-file, move-directory: file work inside the job's own folder."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from runner.commands import BadParameters, CommandFailed, TaskContext, command, param


def _inside(ctx: TaskContext, parameters: dict[str, Any], key: str, command_name: str) -> Path:
    """The path parameter ``key``, inside the job's folder; anything leaving it is refused."""
    relative = param(parameters, key, str, command_name=command_name)
    parts = PurePosixPath(relative).parts
    if (
        not parts
        or PurePosixPath(relative).is_absolute()
        or "\\" in relative
        or any(p in ("..", ".") for p in parts)
    ):
        raise BadParameters(f"{command_name}: {relative!r} is not a relative path inside the job")
    return ctx.files_dir().joinpath(*parts)


@command("make-directory")
def make_directory(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    path = _inside(ctx, parameters, "path", "make-directory")
    path.mkdir(parents=True, exist_ok=True)


@command("copy-file")
def copy_file(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    source = _inside(ctx, parameters, "source", "copy-file")
    dest = _inside(ctx, parameters, "dest", "copy-file")
    if not source.is_file():
        raise CommandFailed(f"copy-file: {parameters['source']!r} does not exist")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)


@command("move-directory")
def move_directory(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    source = _inside(ctx, parameters, "source", "move-directory")
    dest = _inside(ctx, parameters, "dest", "move-directory")
    if not source.is_dir():
        raise CommandFailed(f"move-directory: {parameters['source']!r} is not a directory")
    if dest.exists():
        raise CommandFailed(f"move-directory: {parameters['dest']!r} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, dest)
