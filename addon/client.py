"""The add-on's HTTP client for the manager, on the standard library only (no bpy).

Errors form one small tree, each with a message an artist can act on::

    FarmClientError
    ├── ManagerUnreachable      connection refused, DNS, timeout
    ├── BadApiKey               401 / 403
    ├── StaleJobType            412: the form was built from an older schema
    ├── FilesMissing            409 files_missing: upload first (an interrupted upload)
    └── ManagerRefused          any other 4xx / 5xx, with the manager's code and message
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_SECONDS = 15.0


class FarmClientError(Exception):
    """Something the artist must know; ``str()`` says what to do."""

    code = "farm_error"


class ManagerUnreachable(FarmClientError):
    code = "manager_unreachable"


class BadApiKey(FarmClientError):
    code = "bad_api_key"


class StaleJobType(FarmClientError):
    code = "stale_job_type"


class FilesMissing(FarmClientError):
    code = "files_missing"


class ManagerRefused(FarmClientError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the manager refused ({status} {code}): {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class ManagerAddress:
    url: str
    api_key: str = field(repr=False)  # never in a log line or a traceback's locals

    @property
    def parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url.strip().rstrip("/"))


def open_connection(address: ManagerAddress) -> http.client.HTTPConnection:
    parts = address.parts
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ManagerUnreachable(
            f"{address.url!r} is not a manager URL; set one like http://farm:8080 in the "
            "add-on preferences"
        )
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)


def request_path(address: ManagerAddress, path: str) -> str:
    return address.parts.path + path


def auth_headers(address: ManagerAddress) -> dict[str, str]:
    return {"Authorization": f"Bearer {address.api_key.strip()}", "Accept": "application/json"}


def unreachable(address: ManagerAddress, error: BaseException) -> ManagerUnreachable:
    return ManagerUnreachable(
        f"cannot reach the manager at {address.url} ({error}); check the URL in the add-on "
        "preferences and that the manager is running"
    )


def raise_for_answer(status: int, body: bytes) -> None:
    """Turn an error answer into the FarmClientError that explains it."""
    if status < 400:
        return
    try:
        error = json.loads(body)
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", body.decode(errors="replace")[:300] or f"HTTP {status}"
    if status in (401, 403):
        raise BadApiKey(
            f"the manager did not accept the API key ({message}); paste a user key (ff_…) "
            "in the add-on preferences"
        )
    if status == 412:
        raise StaleJobType(
            f"{message} (the job type changed on the manager: the form was reloaded)"
        )
    if status == 409 and code == "files_missing":
        raise FilesMissing(f"{message} (submit again: the add-on re-checks and uploads them)")
    raise ManagerRefused(status, code, message)


def call(address: ManagerAddress, method: str, path: str, payload: Any = None) -> Any:
    """One JSON request; the decoded JSON answer, or a FarmClientError."""
    body = None if payload is None else json.dumps(payload).encode()
    headers = auth_headers(address)
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection = open_connection(address)
    try:
        connection.request(method, request_path(address, path), body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
    except (OSError, http.client.HTTPException) as error:  # timeouts are OSErrors
        raise unreachable(address, error) from error
    finally:
        connection.close()
    raise_for_answer(answer.status, data)
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError as error:
        raise ManagerRefused(
            answer.status, "not_json", "the answer was not JSON; is this URL a framefarm manager?"
        ) from error


def manager_version(address: ManagerAddress) -> str:
    return str(call(address, "GET", "/api/version")["version"])


def job_types(address: ManagerAddress) -> list[dict[str, Any]]:
    return list(call(address, "GET", "/api/job-types")["job_types"])


def missing_blobs(address: ManagerAddress, blobs: dict[str, int]) -> set[str]:
    """The hashes, of these ``{sha256: size}``, that the manager does not have yet."""
    query = {"blobs": [{"sha256": sha, "size": size} for sha, size in sorted(blobs.items())]}
    answer = call(address, "POST", "/api/blobs/missing", query)
    return {blob["sha256"] for blob in answer["missing"]}


def submit_manifest(address: ManagerAddress, submission: dict[str, Any]) -> dict[str, Any]:
    return dict(call(address, "POST", "/api/jobs/manifest", submission))


def recent_jobs(address: ManagerAddress, limit: int = 10) -> list[dict[str, Any]]:
    return list(call(address, "GET", f"/api/jobs?limit={int(limit)}")["jobs"])


def job_page_url(address: ManagerAddress, job_id: int) -> str:
    return f"{address.url.strip().rstrip('/')}/jobs/{job_id}"
