"""Manager errors and the one JSON error shape ``{"code", "message"}``.

FarmError
├── BadRequest          400
├── Unauthorized        401
├── Forbidden           403
├── NotFound            404
├── Conflict            409
├── PayloadTooLarge     413
├── InvalidInput        422
└── ServiceBusy         503 (with Retry-After)

A full disk (OSError ENOSPC or EDQUOT, wherever it strikes) answers 507 ``storage_full``.
"""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class FarmError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(FarmError):
    status_code = 400
    code = "bad_request"


class Unauthorized(FarmError):
    status_code = 401
    code = "unauthorized"


class Forbidden(FarmError):
    status_code = 403
    code = "forbidden"


class NotFound(FarmError):
    status_code = 404
    code = "not_found"


class Conflict(FarmError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(FarmError):
    status_code = 413
    code = "payload_too_large"


class InvalidInput(FarmError):
    status_code = 422
    code = "invalid_input"


class ServiceBusy(FarmError):
    status_code = 503
    code = "busy"


STORAGE_FULL_MESSAGE = (
    "the manager's storage is full, so nothing of this request was kept; "
    "free space on it (or raise its quota) and send it again"
)
STORAGE_RETRY_AFTER = "30"
BODY_PARSE_FAILURE = "There was an error parsing the body"
"""FastAPI's words for a body it could not decode at all (not UTF-8, a broken form)."""


def error_response(status_code: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message}, status_code=status_code, headers=headers
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def farm_error_response(exc: FarmError) -> JSONResponse:
    headers = {"Retry-After": "1"} if isinstance(exc, ServiceBusy) else {}
    return error_response(exc.status_code, exc.code, exc.message, **headers)


def os_error_response(exc: OSError) -> JSONResponse:
    # A full disk can strike any write (an upload, an output, a job folder); the
    # writers clean their temp files up, so what the client needs is the cause.
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        log.error("storage full: %s", exc)
        return error_response(
            507, "storage_full", STORAGE_FULL_MESSAGE, **{"Retry-After": STORAGE_RETRY_AFTER}
        )
    log.exception("file system error")
    return error_response(500, "file_system_error", "a file operation failed; see the log")


def database_error_response(exc: OperationalError) -> JSONResponse:
    if exc.connection_invalidated:
        # The database dropped the connection (a restart); the pool has let it go.
        log.warning("database connection lost: %s", exc.orig)
        return error_response(
            503,
            "database_unreachable",
            "the database connection was lost; retry shortly",
            **{"Retry-After": "1"},
        )
    if "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower():
        log.warning("database busy: %s", exc.orig)
        return error_response(
            503, "busy", "the database is busy; retry shortly", **{"Retry-After": "1"}
        )
    log.exception("database error")
    return error_response(500, "database_error", "the database failed; see the manager log")


def response_for(exc: Exception) -> JSONResponse | None:
    """The answer the handlers below give for ``exc``, for code outside FastAPI's routing."""
    if isinstance(exc, FarmError):
        return farm_error_response(exc)
    if isinstance(exc, OSError):
        return os_error_response(exc)
    if isinstance(exc, OperationalError):
        return database_error_response(exc)
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to ``{"code", "message"}``."""

    @app.exception_handler(FarmError)
    async def farm_error(_: Request, exc: FarmError) -> JSONResponse:
        return farm_error_response(exc)

    @app.exception_handler(OSError)
    async def os_error(_: Request, exc: OSError) -> JSONResponse:
        return os_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if message == BODY_PARSE_FAILURE:
            message = "the request body could not be read: send UTF-8 JSON (or a form for uploads)"
        return error_response(exc.status_code, code, message, **(exc.headers or {}))

    @app.exception_handler(OperationalError)
    async def database_error(_: Request, exc: OperationalError) -> JSONResponse:
        return database_error_response(exc)
