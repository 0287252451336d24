"""echo, sleep and exec: small commands for test farms and admin-installed job types."""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from runner.commands import BadParameters, CommandFailed, TaskContext, command, param

log = logging.getLogger("framefarm.runner")


@command("echo")
def echo(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    message = param(parameters, "message", str, command_name="echo")
    log.info("task %s: %s", ctx.task_id, message)
    ctx.progress.log_line(message)
    ctx.progress.send(activity=message[:200])


@command("sleep")
def sleep(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    seconds = float(param(parameters, "seconds", float, command_name="sleep"))
    if not 0 <= seconds <= 86_400:
        raise BadParameters("sleep: seconds must be between 0 and 86400")
    ctx.stop.wait(seconds)  # a stopped task does not sleep on


@command("exec")
def exec_(ctx: TaskContext, parameters: dict[str, Any]) -> None:
    """Run a program (an argv list, no shell) in the job's folder.

    Only job types installed by an admin on the manager exist, so only they can send this.
    """
    argv = param(parameters, "argv", list, command_name="exec")
    if not argv or not all(isinstance(a, str) for a in argv):
        raise BadParameters("exec: argv must be a non-empty list of strings")
    cwd = ctx.files_dir()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        ctx.progress.log_line(line.rstrip("\n"))
        if ctx.stop.is_set():
            process.terminate()
            break
    code = process.wait()
    if code != 0 and not ctx.stop.is_set():
        raise CommandFailed(f"exec: {argv[0]} exited with code {code}")
