"""How a job can fail, in the two kinds the failure policy distinguishes.

Transient: worth trying again (runtime unreachable, 5xx, throttling). Permanent: trying again
gives the same answer (the runtime rejects the payload, the message breaks the contract, an input
reference is refused). Everything the agent catches is turned into one of these two near where it
happened, so the retry and finish logic never inspects foreign exception types.
"""

from __future__ import annotations


class JobError(Exception):
    """Base class; ``code`` is the machine-readable error code sent in the notification."""

    code = "job_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class TransientError(JobError):
    code = "transient"


class PermanentError(JobError):
    code = "rejected"


class JobCancelled(Exception):
    """The task was cancelled while it ran; the runtime was interrupted."""
