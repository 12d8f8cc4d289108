"""The single validation error every component raises for bad input, and its JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError


class ErrorCode(StrEnum):
    """Every machine-readable error code that goes on the wire: API answers, runtime answers, notifications."""

    # Client mistakes (API and runtime answers).
    INVALID_REQUEST = "invalid_request"
    REQUEST_TOO_LARGE = "request_too_large"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TASK_FINISHED = "task_finished"
    FORBIDDEN = "forbidden"
    BAD_REQUEST = "bad_request"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    LENGTH_REQUIRED = "length_required"
    # The service side (API gateway, Lambdas, runtime).
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
    BAD_GATEWAY = "bad_gateway"
    NOT_READY = "not_ready"
    OUT_OF_MEMORY = "out_of_memory"
    INTERRUPTED = "interrupted"
    MODEL_LOAD_FAILED = "model_load_failed"
    GENERATION_FAILED = "generation_failed"
    TOO_LARGE_FOR_DEVICE = "too_large_for_device"
    QUEUE_FULL = "queue_full"
    UNHEALTHY = "unhealthy"
    CLIENT_GONE = "client_gone"
    # Why a task failed (the status record's and the notification's ``error.code``).
    PUBLISH_FAILED = "publish_failed"
    JOB_ERROR = "job_error"
    TRANSIENT = "transient"
    REJECTED = "rejected"
    INTERNAL = "internal"
    TIMEOUT = "timeout"
    EXPIRED = "expired"
    INVALID_MESSAGE = "invalid_message"
    WRONG_RUNTIME = "wrong_runtime"
    UNSUPPORTED_TASKTYPE = "unsupported_tasktype"
    INPUT_REFUSED = "input_refused"
    INPUT_UNREADABLE = "input_unreadable"
    INPUT_TIMEOUT = "input_timeout"
    RUNTIME_UNAVAILABLE = "runtime_unavailable"
    RUNTIME_REJECTED = "runtime_rejected"
    NODE_NOT_ALLOWED = "node_not_allowed"
    RUNTIME_BAD_RESPONSE = "runtime_bad_response"
    AWS_UNAVAILABLE = "aws_unavailable"
    AWS_REJECTED = "aws_rejected"
    DEAD_LETTERED = "dead_lettered"

    @classmethod
    def parse(cls, value: object) -> ErrorCode:
        """A code read back from storage; anything unknown (an older writer's) reads as ``job_error``."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.JOB_ERROR


@dataclass(frozen=True)
class FieldIssue:
    """One offending field: a dotted path (``task.content.steps``), the rule it broke, and why."""

    field: str
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class ContractError(ValueError):
    """Input that does not satisfy the wire contract. Carries every offending field, not just the first."""

    code: ErrorCode = ErrorCode.INVALID_REQUEST

    def __init__(self, issues: list[FieldIssue], *, code: ErrorCode | None = None, status: int = 400) -> None:
        if not issues:
            raise ValueError("ContractError needs at least one issue")
        self.issues = issues
        self.status = status
        if code is not None:
            self.code = code
        summary = "; ".join(f"{i.field}: {i.message}" for i in issues[:5])
        more = f" (+{len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"{len(issues)} invalid field(s): {summary}{more}")

    @classmethod
    def single(cls, field: str, rule: str, message: str, **kwargs: Any) -> ContractError:
        return cls([FieldIssue(field, rule, message)], **kwargs)

    @classmethod
    def from_validation_error(cls, exc: ValidationError, *, prefix: str = "") -> ContractError:
        issues = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"] if p not in ("function-after[check(), TaskContent]",)]
            path = ".".join(p for p in [prefix, *loc] if p)
            issues.append(FieldIssue(path or "(body)", err["type"], _clean_message(err["msg"])))
        return cls(issues)

    def to_dict(self) -> dict[str, Any]:
        """The error body the API returns; stable shape: {"error": {code, message, fields[]}}."""
        return {
            "error": {
                "code": self.code.value,
                "message": str(self),
                "fields": [i.to_dict() for i in self.issues],
            }
        }


def _clean_message(msg: str) -> str:
    # pydantic prefixes custom errors with "Value error, "; the field name already says where.
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def error_body(code: ErrorCode, message: str) -> dict[str, Any]:
    """An error body with no field list (auth, not found, conflict...), same shape as ContractError."""
    return {"error": {"code": code.value, "message": message, "fields": []}}
