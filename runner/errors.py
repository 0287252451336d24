"""Runner errors.

RunnerError
├── ManagerUnreachable      the manager did not answer (network, timeout, 5xx): retry later
├── ManagerRejected         the manager answered with a 4xx {"code", "message"}
│   └── TaskGone            the task was canceled or given to another runner: stop it
└── WorkspaceError          a job file could not be fetched or verified
"""

from __future__ import annotations


class RunnerError(Exception):
    pass


class ManagerUnreachable(RunnerError):
    pass


class ManagerRejected(RunnerError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"manager refused ({status} {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


class TaskGone(ManagerRejected):
    pass


class WorkspaceError(RunnerError):
    pass
