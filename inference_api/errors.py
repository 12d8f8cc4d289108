"""Errors the runtime answers with: the contract's JSON shape plus AUTOMATIC1111's ``detail``.

``{"error": {"code", "message", "fields": [{"field", "rule", "message"}]}, "detail": ...}`` where ``detail``
is FastAPI's list of ``{"loc", "msg", "type"}`` for invalid fields (what A1111 clients parse) and the
message otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contract.errors import ContractError, FieldIssue, error_body


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, fields: Iterable[FieldIssue] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)

    def body(self) -> dict[str, Any]:
        if self.fields:
            body = ContractError(self.fields, code=self.code).to_dict()
            body["detail"] = [{"loc": ["body", *_loc(f.field)], "msg": f.message, "type": f.rule} for f in self.fields]
            return body
        body = error_body(self.code, self.message)
        body["detail"] = self.message
        return body


def _loc(field: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in field.split(".")]


def invalid(issues: Iterable[FieldIssue]) -> ApiError:
    issues = list(issues)
    return ApiError(422, "invalid_request", ContractError(issues).args[0], issues)


def invalid_field(field: str, rule: str, message: str) -> ApiError:
    return invalid([FieldIssue(field, rule, message)])


def interrupted() -> ApiError:
    # 409: the job was stopped on purpose (POST /sdapi/v1/interrupt); retrying it would defeat the interrupt.
    return ApiError(409, "interrupted", "the job was interrupted before it finished")


def out_of_memory() -> ApiError:
    # 503: memory pressure is transient (another job, a fragmented cache); callers may retry later.
    return ApiError(503, "out_of_memory", "the accelerator ran out of memory for this job; retry later or ask less")


def not_ready(message: str = "no model is loaded") -> ApiError:
    return ApiError(503, "not_ready", message)
