"""How a job can fail, in the two kinds the failure policy distinguishes.

Transient: worth trying again (runtime unreachable, 5xx, throttling). Permanent: trying again
gives the same answer (the runtime rejects the payload, the message breaks the contract, an input
reference is refused). Everything the agent catches is turned into one of these two near where it
happened, so the retry and finish logic never inspects foreign exception types.
"""

from __future__ import annotations

from contract import ErrorCode


class JobError(Exception):
    """Base class; ``code`` is the machine-readable error code sent in the notification."""

    code: ErrorCode = ErrorCode.JOB_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class TransientError(JobError):
    """``retry_after``: seconds the failing party asked us to wait (an HTTP ``Retry-After``), if any."""

    code: ErrorCode = ErrorCode.TRANSIENT

    def __init__(self, message: str, *, code: ErrorCode | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RuntimeInterrupted(TransientError):
    """The runtime stopped the call on an interrupt. For the job that asked for it the runner turns
    this into a cancel or a timeout; any other job caught by the same interrupt (merged into one batch
    with it) is simply tried again."""

    code: ErrorCode = ErrorCode.INTERRUPTED


class PermanentError(JobError):
    code: ErrorCode = ErrorCode.REJECTED


class JobCancelled(Exception):
    """The task was cancelled while it ran; the runtime was interrupted."""
