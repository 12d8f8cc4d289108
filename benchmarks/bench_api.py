"""The task API handlers' own cost: warm latency per request with AWS taken out, and the cold start.

Warm: the real handler (``task_api.app.handler``) is invoked in-process with real REST proxy events. Its
boto3 clients are the real ones, serialising and signing every request; only the network is replaced, by
a ``before-send`` hook answering each DynamoDB/SNS call with a canned response. So the numbers are
Powertools routing + contract validation + botocore request building + response parsing, with zero AWS
latency. The same requests through the local gateway (loopback HTTP) are measured too.

Cold: a fresh interpreter importing ``task_api.app`` (what a Lambda cold start pays before the first
event), and that interpreter's first request (clients created, first use of every code path).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 200
ROUNDS = 2000
COLD_RUNS = 5
TABLE, BUCKET, TOPIC = "bench-task-status", "bench-outputs", "arn:aws:sns:us-east-1:123456789012:bench-tasks"
ENV = {
    "TASKS_TOPIC_ARN": TOPIC,
    "STATUS_TABLE": TABLE,
    "OUTPUT_BUCKET": BUCKET,
    "RUNTIMES": "sdruntime,comfyruntime",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SUBMIT_BODY = json.dumps(
    {
        "task": {
            "metadata": {"id": "bench-1", "runtime": "sdruntime", "tasktype": "text-to-image", "context": {"u": 1}},
            "content": {"prompt": "a lighthouse at dusk", "steps": 20, "width": 512, "height": 512, "seed": 7},
        }
    }
)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _item(status: str) -> dict[str, Any]:
    from task_api.store import to_attributes

    return to_attributes(
        {
            "id": "bench-1",
            "runtime": "sdruntime",
            "tasktype": "text-to-image",
            "status": status,
            "prefix": "output",
            "attempts": 1,
            "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:05+00:00",
            "output_location": f"s3://{BUCKET}/output/bench-1",
            "image_url": [f"s3://{BUCKET}/output/bench-1/bench-1-1.png", f"s3://{BUCKET}/output/bench-1/bench-1-2.png"],
            "output_url": f"s3://{BUCKET}/output/bench-1/bench-1.out",
            "context": {"u": 1},
            "fingerprint": "f" * 64,
        }
    )


def _answers(get_status: str) -> dict[str, bytes]:
    return {
        "dynamodb.PutItem": b"{}",
        "dynamodb.GetItem": json.dumps({"Item": _item(get_status)}).encode(),
        "dynamodb.UpdateItem": json.dumps({"Attributes": _item("cancelled")}).encode(),
        "sns.Publish": (
            b'<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
            b"<MessageId>00000000-0000-0000-0000-000000000000</MessageId></PublishResult>"
            b"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>"
        ),
    }


@contextmanager
def _no_network(get_status: str) -> Iterator[dict[str, int]]:
    """Answer every DynamoDB and SNS call of the handler's cached clients locally; count the calls."""
    from botocore.awsrequest import AWSResponse
    from task_api import aws

    answers = _answers(get_status)
    calls: dict[str, int] = {}
    hooks: list[tuple[Any, str, Callable[..., Any]]] = []
    for operation, body in answers.items():
        service, name = operation.split(".")
        client = aws.client(service)

        def answer(request: Any, _body: bytes = body, _op: str = operation, **_: Any) -> AWSResponse:
            calls[_op] = calls.get(_op, 0) + 1
            return AWSResponse(request.url, 200, {"x-amzn-requestid": "r"}, _Raw(_body))

        event = f"before-send.{service}.{name}"
        client.meta.events.register(event, answer)
        hooks.append((client, event, answer))
    try:
        yield calls
    finally:
        for client, event, answer in hooks:
            client.meta.events.unregister(event, answer)


def _event(method: str, path: str, body: str | None) -> dict[str, Any]:
    from task_api import app

    from local_stack.gateway_events import GatewayRoute, HttpRequest, rest_proxy_event

    resource = "/tasks/{id}" if path.startswith("/tasks/") else path
    route = GatewayRoute(method, resource, app.handler)
    request = HttpRequest(method, path, "", [("Content-Type", "application/json")], (body or "").encode())
    return rest_proxy_event(request, route, route.match(path) or {}, stage="bench", domain="bench", api_key="k")


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p95_us": round(ordered[int(len(ordered) * 0.95)] * 1e6, 1),
        "mean_us": round(statistics.fmean(ordered) * 1e6, 1),
    }


def _time(call: Callable[[], Any], rounds: int = ROUNDS) -> list[float]:
    for _ in range(WARMUP):
        call()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def _warm() -> tuple[dict[str, Any], dict[str, int]]:
    from task_api import app

    from local_stack.gateway_events import LambdaContext

    context = LambdaContext(function_name="bench")
    scenarios = {
        # DynamoDB GetItem answers "completed" here, so a submit finds the id taken with another fingerprint
        # only in the idempotency path; the submit scenario's PutItem succeeds, so it publishes every time.
        "submit_202": ("POST", "/tasks", SUBMIT_BODY, "completed", 202),
        "status_200_two_presigned_images": ("GET", "/tasks/bench-1", None, "completed", 200),
        "cancel_queued_200": ("DELETE", "/tasks/bench-1", None, "queued", 200),
        "invalid_400_no_aws": ("POST", "/tasks", '{"task": {"metadata": {}}}', "completed", 400),
    }
    metrics: dict[str, Any] = {}
    calls_total: dict[str, int] = {}
    for name, (method, path, body, get_status, expected) in scenarios.items():
        event = _event(method, path, body)
        with _no_network(get_status) as calls:
            status = app.handler(event, context)["statusCode"]
            assert status == expected, (name, status)
            metrics[name] = _percentiles(_time(functools.partial(app.handler, event, context)))
        for op, n in calls.items():
            calls_total[op] = calls_total.get(op, 0) + n
    return metrics, calls_total


def _through_gateway() -> dict[str, Any]:
    import httpx
    from task_api import app

    from local_stack.gateway import LocalGateway

    with _no_network("completed"), LocalGateway("k", app.handler) as gateway:
        with httpx.Client(base_url=gateway.url, headers={"x-api-key": "k"}) as client:
            samples = _time(lambda: client.get("/tasks/bench-1"), rounds=500)
    return _percentiles(samples)


_COLD_SCRIPT = """
import json, time
t0 = time.perf_counter()
import task_api.app
t1 = time.perf_counter()
from local_stack.gateway_events import GatewayRoute, HttpRequest, LambdaContext, rest_proxy_event
route = GatewayRoute("POST", "/tasks", task_api.app.handler)
request = HttpRequest("POST", "/tasks", "", [], b'{"task": {}}')
event = rest_proxy_event(request, route, {}, stage="s", domain="d", api_key=None)
t2 = time.perf_counter()
task_api.app.handler(event, LambdaContext(function_name="cold"))
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_request_ms": (t3 - t2) * 1000}))
"""


def _cold() -> dict[str, Any]:
    env = {**os.environ, **ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'lambda'}"}
    env.pop("POWERTOOLS_TRACE_DISABLED")  # as deployed: the Tracer imports the X-Ray SDK
    runs = []
    for _ in range(COLD_RUNS):
        out = subprocess.run(
            [sys.executable, "-c", _COLD_SCRIPT], env=env, capture_output=True, text=True, check=True, cwd=ROOT
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "import_ms_median": round(statistics.median(r["import_ms"] for r in runs), 1),
        "import_ms_min": round(min(r["import_ms"] for r in runs), 1),
        "first_request_400_ms_median": round(statistics.median(r["first_request_ms"] for r in runs), 1),
    }


def run() -> dict[str, Any]:
    os.environ.update(ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)  # no endpoint is ever reached: every call is answered locally
    if str(ROOT / "lambda") not in sys.path:
        sys.path.append(str(ROOT / "lambda"))
    from task_api.observability import logger

    # The JSON log lines are formatted (their cost counts) but written nowhere.
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    with open(os.devnull, "w") as devnull:
        previous = handler.setStream(devnull)
        try:
            warm, calls = _warm()
            gateway = _through_gateway()
        finally:
            handler.setStream(previous)
    return {
        "metrics": {
            "warm_handler": warm,
            "warm_through_local_gateway_get": gateway,
            "cold": _cold(),
        },
        "notes": (
            f"Warm: {ROUNDS} requests per scenario after {WARMUP} warm-up, the real handler and boto3 clients "
            "with the network replaced by canned DynamoDB/SNS answers (serialisation, signing and parsing "
            f"included; AWS calls answered: {calls}). S3 presigning is local work and always real. "
            "Cold: a fresh interpreter importing task_api.app with the Tracer enabled as in Lambda (the X-Ray "
            f"SDK is part of the import), median of {COLD_RUNS}; first request = a 400 answered by that "
            "interpreter. Measured on the shared 2-core development machine, so expect noise."
        ),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
