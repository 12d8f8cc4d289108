"""Domain errors of the runtime: what went wrong and whether trying again can help. No HTTP here.

The worker thread and the request handling raise these; :mod:`inference_api.http_errors` maps each kind
to a status (4xx: the same request fails the same way, do not retry; 5xx/503: transient, retry later).
"""

from __future__ import annotations

from collections.abc import Iterable

from contract import ContractError, ErrorCode, FieldIssue


class InferenceError(Exception):
    """A failure reported to the caller, with a stable machine-readable code."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, fields: Iterable[FieldIssue] = (), *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields)
        if code is not None:
            self.code = code


class InvalidRequest(InferenceError):
    """A field breaks a rule: deterministic, the same request always fails."""

    code: ErrorCode = ErrorCode.INVALID_REQUEST


class TooLargeForDevice(InferenceError):
    """The request ran out of accelerator memory alone, on an emptied cache: it will never fit here."""

    code: ErrorCode = ErrorCode.TOO_LARGE_FOR_DEVICE


class NotReady(InferenceError):
    """No model can run now (none found yet, loading, warming up): transient."""

    code: ErrorCode = ErrorCode.NOT_READY


class Overloaded(InferenceError):
    """The bounded queue is full: transient."""

    code: ErrorCode = ErrorCode.QUEUE_FULL


class OutOfMemory(InferenceError):
    """Ran out of accelerator memory for a reason that may pass (memory held by others): transient."""

    code: ErrorCode = ErrorCode.OUT_OF_MEMORY


class Unhealthy(InferenceError):
    """The accelerator is in a state this process cannot recover from; the container must restart."""

    code: ErrorCode = ErrorCode.UNHEALTHY


class ModelLoadFailed(InferenceError):
    code: ErrorCode = ErrorCode.MODEL_LOAD_FAILED


class GenerationFailed(InferenceError):
    code: ErrorCode = ErrorCode.GENERATION_FAILED


class ClientGone(InferenceError):
    """The caller disconnected before its answer was ready; nobody reads this one."""

    code: ErrorCode = ErrorCode.CLIENT_GONE


def invalid(issues: Iterable[FieldIssue]) -> InvalidRequest:
    issues = list(issues)
    return InvalidRequest(ContractError(issues).args[0], issues)


def invalid_field(field: str, rule: str, message: str) -> InvalidRequest:
    return invalid([FieldIssue(field, rule, message)])
