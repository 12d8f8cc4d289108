"""Domain errors on the wire: the status for each kind, ``Retry-After`` on transient ones, one JSON shape.

``{"error": {"code", "message", "fields": [{"field", "rule", "message"}]}, "detail": ...}`` where ``detail``
is FastAPI's list of ``{"loc", "msg", "type"}`` for invalid fields (what A1111 clients parse) and the
message otherwise. 4xx: the same request will fail again (the queue agent fails the job at once);
5xx and 503: transient (the agent retries, after ``Retry-After`` when there is one).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from contract import ContractError, ErrorCode, error_body
from inference_api.errors import (
    ClientGone,
    GenerationFailed,
    InferenceError,
    InvalidRequest,
    ModelLoadFailed,
    NotReady,
    OutOfMemory,
    Overloaded,
    TooLargeForDevice,
    Unhealthy,
)

STATUS: dict[type[InferenceError], int] = {
    InvalidRequest: 422,
    TooLargeForDevice: 422,
    ClientGone: 499,
    NotReady: 503,
    Overloaded: 503,
    OutOfMemory: 503,
    Unhealthy: 503,
    ModelLoadFailed: 500,
    GenerationFailed: 500,
}


def status_of(exc: InferenceError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]  # type: ignore[index]
    return 500


def error_json(code: ErrorCode, message: str, exc: InferenceError | None = None) -> dict[str, Any]:
    fields = exc.fields if exc is not None else []
    if fields:
        body = ContractError(fields, code=code).to_dict()
        body["detail"] = [{"loc": ["body", *_loc(f.field)], "msg": f.message, "type": f.rule} for f in fields]
        return body
    body = error_body(code, message)
    body["detail"] = message
    return body


def error_response(exc: InferenceError, retry_after: int) -> JSONResponse:
    status = status_of(exc)
    headers = {"Retry-After": str(retry_after)} if status == 503 else None
    return JSONResponse(error_json(exc.code, exc.message, exc), status_code=status, headers=headers)


def plain_error(status: int, code: ErrorCode, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_json(code, message), status_code=status, headers=headers)


def _loc(field: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in field.split(".")]
