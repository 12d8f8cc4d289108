"""Domain errors of the runtime: what went wrong and whether trying again can help. No HTTP here.

The worker thread and the request handling raise these; :mod:`inference_api.http_errors` maps each kind
to a status (4xx: the same request fails the same way, do not retry; 5xx/503: transient, retry later).
"""

from __future__ import annotations

from collections.abc import Iterable

from contract.errors import ContractError, FieldIssue


class InferenceError(Exception):
    """A failure reported to the caller, with a stable machine-readable code."""

    code = "internal_error"

    def __init__(self, message: str, fields: Iterable[FieldIssue] = (), *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields)
        if code is not None:
            self.code = code


class InvalidRequest(InferenceError):
    """A field breaks a rule: deterministic, the same request always fails."""

    code = "invalid_request"


class TooLargeForDevice(InferenceError):
    """The request ran out of accelerator memory alone, on an emptied cache: it will never fit here."""

    code = "too_large_for_device"


class NotReady(InferenceError):
    """No model can run now (none found yet, loading, warming up): transient."""

    code = "not_ready"


class Overloaded(InferenceError):
    """The bounded queue is full: transient."""

    code = "queue_full"


class OutOfMemory(InferenceError):
    """Ran out of accelerator memory for a reason that may pass (memory held by others): transient."""

    code = "out_of_memory"


class Unhealthy(InferenceError):
    """The accelerator is in a state this process cannot recover from; the container must restart."""

    code = "unhealthy"


class ModelLoadFailed(InferenceError):
    code = "model_load_failed"


class GenerationFailed(InferenceError):
    code = "generation_failed"


class JobInterrupted(InferenceError):
    """Stopped on purpose by /interrupt: retrying it would defeat the interrupt."""

    code = "interrupted"


class ClientGone(InferenceError):
    """The caller disconnected before its answer was ready; nobody reads this one."""

    code = "client_gone"


def invalid(issues: Iterable[FieldIssue]) -> InvalidRequest:
    issues = list(issues)
    return InvalidRequest(ContractError(issues).args[0], issues)


def invalid_field(field: str, rule: str, message: str) -> InvalidRequest:
    return invalid([FieldIssue(field, rule, message)])
