"""Every operation of /openapi.json fuzzed against a real manager: no 5xx, answers as described.

Schemathesis draws requests from the manager's own OpenAPI document, valid and invalid, and
sends them over HTTP to a uvicorn process with real users, keys and a job. Each request goes
with the credentials its route expects (a runner key for ``/api/runner``, an admin's key for
``/api/admin``, a user's otherwise), so the fuzzing reaches the handlers and not only the
authentication. The examples are derandomised and bounded, so the run is repeatable.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.schemas import APIOperation

from manager.app import create_app
from manager.settings import ManagerSettings
from tests.reliability.conftest import ServedManager

EXAMPLES_PER_OPERATION = 25
ID_PARAMETER = re.compile(r"(^|_)id$")


def manager_operations() -> list[APIOperation]:
    """The operations of the manager's OpenAPI document, read from the app itself."""
    app = create_app(ManagerSettings(db=":memory:", storage="unused-storage"))
    schema = schemathesis.openapi.from_dict(app.openapi())
    return [result.ok() for result in schema.get_all_operations()]


def credentials(path: str, manager: ServedManager) -> str:
    if path.startswith("/api/runner"):
        return manager.runner_key
    if path.startswith("/api/admin"):
        return manager.admin_key
    return manager.user_key


def protect_the_callers(case: schemathesis.Case) -> None:
    """Keep the fuzzer from revoking its own keys or deleting its own users mid-run.

    Those operations still run, on ids that exist nowhere; revocation and deletion have
    tests of their own (tests/manager/test_admin_api.py, test_auth_keys.py).
    """
    if case.method == "DELETE" and re.search(r"/(keys|users)/\{", case.operation.path):
        for name in case.path_parameters or {}:
            if ID_PARAMETER.search(name):
                case.path_parameters[name] = 10_000_000  # type: ignore[index]


@pytest.mark.parametrize("operation", manager_operations(), ids=lambda op: op.label)
def test_no_operation_fails_on_the_server(
    operation: APIOperation, served_manager: ServedManager
) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        protect_the_callers(case)
        if case.operation.path.endswith("/claim"):
            # The claim long poll would wait its full time; its waiting is tested elsewhere.
            case.query = {**(case.query or {}), "wait": 0.05}
        response = case.call_and_validate(
            base_url=served_manager.url,
            headers={"Authorization": f"Bearer {credentials(case.path, served_manager)}"},
            checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            timeout=20,
        )
        assert response.status_code < 500, served_manager.log()[-3000:]

    call()
