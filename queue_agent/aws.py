"""AWS clients (aioboto3) for the agent's lifetime, and the one place that classifies AWS errors.

Endpoints come from the standard ``AWS_ENDPOINT_URL`` (and per-service variants), which botocore
reads itself; the local stack and the tests point it at a moto server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from contract import ErrorCode
from queue_agent.errors import JobError, PermanentError, TransientError

# Standard retry mode already backs off on throttling and 5xx; the agent adds its own policy on top.
_RETRIES = {"mode": "standard", "max_attempts": 5}
_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def client_config(read_timeout: float) -> Config:
    # read_timeout must outlast an SQS long poll (up to 20 s) or every idle receive would time out.
    return Config(
        retries=_RETRIES,  # type: ignore[arg-type]
        connect_timeout=5,
        read_timeout=read_timeout,
        max_pool_connections=32,
    )


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or status == 429 or error_code(exc) in _THROTTLING
    return isinstance(exc, BotoCoreError | OSError | TimeoutError)


def classify(exc: BaseException, what: str) -> JobError:
    """Turn an AWS failure into the agent's transient/permanent kinds, keeping the service's own code."""
    code = error_code(exc) or type(exc).__name__
    if is_transient(exc):
        return TransientError(f"{what}: {code}", code=ErrorCode.AWS_UNAVAILABLE)
    return PermanentError(f"{what}: {code}", code=ErrorCode.AWS_REJECTED)


@dataclass
class AwsClients:
    sqs: Any
    sns: Any
    s3: Any
    dynamodb: Any  # a DynamoDB service resource (for the Table API the contract's update kwargs target)


@contextlib.asynccontextmanager
async def open_clients(receive_wait: int, session: aioboto3.Session | None = None) -> AsyncIterator[AwsClients]:
    session = session or aioboto3.Session()
    long_poll = client_config(read_timeout=receive_wait + 15)
    short = client_config(read_timeout=60)
    async with contextlib.AsyncExitStack() as stack:
        yield AwsClients(
            sqs=await stack.enter_async_context(session.client("sqs", config=long_poll)),
            sns=await stack.enter_async_context(session.client("sns", config=short)),
            s3=await stack.enter_async_context(session.client("s3", config=short)),
            dynamodb=await stack.enter_async_context(session.resource("dynamodb", config=short)),
        )
