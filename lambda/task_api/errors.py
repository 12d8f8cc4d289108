"""Errors the API answers with, all in the contract's stable JSON shape ``{"error": {code, message, fields}}``."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import ErrorCode, error_body

# AWS answers that mean "try again shortly" rather than "this will never work".
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)


class ApiError(Exception):
    """An answer other than success. ``extra`` adds top-level keys beside ``error`` (e.g. the current status)."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {**error_body(self.code, self.message), **self.extra}


def unavailable(message: str) -> ApiError:
    return ApiError(503, ErrorCode.SERVICE_UNAVAILABLE, message, headers={"Retry-After": "1"})


def is_conditional_failure(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == (
        "ConditionalCheckFailedException"
    )


def from_aws_error(exc: BotoCoreError | ClientError, action: str) -> ApiError:
    """Map an AWS failure to 503 when retrying may help (throttling, 5xx, network), else 500."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        http = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _TRANSIENT_CODES or http >= 500:
            return unavailable(f"{action} is temporarily unavailable; retry shortly")
        return ApiError(500, ErrorCode.INTERNAL_ERROR, f"{action} failed")
    # Connection refused, timeouts, DNS: the service is unreachable from here, which is transient too.
    return unavailable(f"{action} is temporarily unavailable; retry shortly")
