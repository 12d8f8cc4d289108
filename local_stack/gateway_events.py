"""API Gateway REST proxy events (payload format 1.0) and Lambda contexts, as the local gateway builds them.

Pure functions and dataclasses, so that the event shape is unit-tested apart from the HTTP server.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True)
class GatewayRoute:
    """One API Gateway method: an HTTP method on a resource template such as ``/tasks/{id}``."""

    method: str
    resource: str
    handler: Handler
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # {name} matches one path segment, like an API Gateway path parameter ({name+} is not needed here).
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.resource))
        object.__setattr__(self, "_pattern", re.compile(f"^{regex}$"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self._pattern.match(path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    timeout_seconds: float = 29.0
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # percent-encoded, as on the request line, without the query string
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"


def rest_proxy_event(
    request: HttpRequest,
    route: GatewayRoute,
    path_parameters: dict[str, str],
    *,
    stage: str,
    domain: str,
    api_key: str | None,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends a Lambda proxy integration for ``request`` (REST API, format 1.0)."""
    headers, multi_headers = _single_and_multi(request.headers)
    query_pairs = parse_qsl(request.query, keep_blank_values=True)
    query, multi_query = _single_and_multi(query_pairs)
    body, is_base64 = _body(request.body)
    now = datetime.now(UTC)
    path = unquote(request.path)
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "extendedRequestId": str(uuid.uuid4()),
            "httpMethod": request.method,
            # Locally the stage is not part of the URL, so the client's path is the resource path.
            "path": path,
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "resourceId": "local",
            "resourcePath": route.resource,
            "stage": stage,
            "identity": {
                "sourceIp": request.source_ip,
                "userAgent": headers.get("User-Agent") or headers.get("user-agent"),
                # API Gateway passes the key the client authenticated with; handlers must never log it.
                "apiKey": api_key,
                "apiKeyId": api_key_id or ("local-key" if api_key else None),
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "accessKey": None,
            },
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _single_and_multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # API Gateway's single-value map keeps the last occurrence
        multi.setdefault(name, []).append(value)
    return single, multi


def _body(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        # What API Gateway does for binary payloads: hand them over base64-encoded, flagged as such.
        return base64.b64encode(raw).decode("ascii"), True
