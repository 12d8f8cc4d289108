"""An HTTP proxy in front of moto that logs every AWS call, can delay it, and can fail it like AWS does.

Each request is classified by service (S3, SNS, SQS, DynamoDB) and operation. With ``fault_rate``
a request is, at random, answered with the service's own throttling error or a 5xx *instead of*
reaching moto (so a fault never has a hidden side effect, as with real throttling). With ``delay``
every forwarded request waits that long first (AWS-like latency). ``log`` keeps, per request, the
service, operation, path, status and the monotonic times it arrived and was answered.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.agent_fakes.server import ServedFake

_SNS_ACTIONS = frozenset(
    {"Publish", "PublishBatch", "Subscribe", "CreateTopic", "ListTopics", "GetTopicAttributes", "Unsubscribe"}
)
_HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    path: str
    status: int
    arrived: float
    answered: float
    injected: bool


class AwsProxy(ServedFake):
    def __init__(self, target: str, *, delay: float = 0.0, fault_rate: float = 0.0, seed: int = 7) -> None:
        self.target = target.rstrip("/")
        self.delay = delay
        self.fault_rate = fault_rate
        self._rng = random.Random(seed)
        self._guard = threading.Lock()
        self.log: list[AwsCall] = []
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[Route("/{path:path}", self._forward, methods=["GET", "PUT", "POST", "DELETE", "HEAD"])]
        )

    @property
    def endpoint(self) -> str:
        return self.url

    def calls(self, service: str | None = None) -> list[AwsCall]:
        with self._guard:
            return [c for c in self.log if service is None or c.service == service]

    async def _forward(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = await request.body()
        service, operation = _classify(request, body)
        with self._guard:
            inject = self.fault_rate > 0 and self._rng.random() < self.fault_rate
            throttle = self._rng.random() < 0.5
        if inject:
            response = _fault(service, throttle)
        else:
            if self.delay:
                await asyncio.sleep(self.delay)
            response = await self._upstream(request, body)
        with self._guard:
            self.log.append(
                AwsCall(service, operation, request.url.path, response.status_code, arrived, time.monotonic(), inject)
            )
        return response

    async def _upstream(self, request: Request, body: bytes) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=60, trust_env=False)
        url = self.target + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        upstream = await self._client.send(
            self._client.build_request(request.method, url, headers=headers, content=body), stream=True
        )
        try:
            raw = b"".join([chunk async for chunk in upstream.aiter_raw()])
        finally:
            await upstream.aclose()
        passed = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        return Response(raw, status_code=upstream.status_code, headers=passed)


def _classify(request: Request, body: bytes) -> tuple[str, str]:
    target = request.headers.get("x-amz-target", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb", target.split(".", 1)[1]
    if target.startswith("AmazonSQS."):
        return "sqs", target.split(".", 1)[1]
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        if action:
            return ("sns" if action in _SNS_ACTIONS else "sqs"), action
    return "s3", request.method


def _fault(service: str, throttle: bool) -> Response:
    """The error this service answers when it throttles (4xx) or fails (5xx)."""
    if service == "dynamodb":
        kind = "ThrottlingException" if throttle else "InternalServerError"
        body: Any = f'{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected {kind}"}}'
        return Response(body, 400 if throttle else 500, media_type="application/x-amz-json-1.0")
    if service == "sqs":
        kind = "ThrottlingException" if throttle else "InternalFailure"
        body = f'{{"__type":"com.amazonaws.sqs#{kind}","message":"injected {kind}"}}'
        return Response(body, 400 if throttle else 500, media_type="application/x-amz-json-1.0")
    if service == "sns":
        code, status = ("Throttling", 400) if throttle else ("InternalError", 500)
        body = (
            f"<ErrorResponse><Error><Type>{'Sender' if throttle else 'Receiver'}</Type><Code>{code}</Code>"
            f"<Message>injected {code}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
        )
        return Response(body, status, media_type="text/xml")
    code, status = ("SlowDown", 503) if throttle else ("InternalError", 500)
    body = f"<Error><Code>{code}</Code><Message>injected {code}</Message><RequestId>injected</RequestId></Error>"
    return Response(body, status, media_type="application/xml")
