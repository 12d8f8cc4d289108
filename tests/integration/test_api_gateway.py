"""The local API Gateway over real HTTP, in front of the real handlers and the moto server."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from task_api import app

from local_stack.gateway import LocalGateway, task_api_routes
from local_stack.gateway_events import GatewayRoute
from local_stack.ports import free_port
from tests.conftest import ROOT
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack

api_stack = support.api_stack  # the fixture, shared by the API test modules

KEY = "local-test-key"
T2I = {"task": {"metadata": {"id": "g-1", "runtime": "sdruntime", "tasktype": "text-to-image"}, "content": {}}}


@pytest.fixture
def gateway(api_stack: ApiStack, tmp_path: Path) -> Iterator[LocalGateway]:
    (tmp_path / "index.html").write_text("<h1>page</h1>")
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("console.log(1)")
    with LocalGateway(KEY, app.handler, static_dir=tmp_path) as gw:
        yield gw


@pytest.fixture
def client(gateway: LocalGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        yield c


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert isinstance(error["message"], str) and isinstance(error["fields"], list)
    if code is not None:
        assert error["code"] == code
    return dict(body)


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"X-API-KEY": KEY + "x"}])
def test_a_missing_or_wrong_api_key_is_403(client: httpx.Client, api_stack: ApiStack, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/tasks"), ("POST", "/v1alpha2"), ("GET", "/tasks/g-1"), ("DELETE", "/tasks/g-1")):
        response = client.request(method, path, json=T2I, headers=headers)
        body = assert_error_shape(response, 403, "forbidden")
        assert body["message"] == "Forbidden"  # API Gateway's own body, kept for clients that read it
    assert api_stack.item("g-1") is None


def test_the_key_header_name_is_case_insensitive_and_the_api_works(client: httpx.Client, api_stack: ApiStack) -> None:
    submitted = client.post("/tasks", json=T2I, headers={"X-Api-Key": KEY})
    assert submitted.status_code == 202
    assert submitted.headers["location"] == "/tasks/g-1"
    assert client.get(submitted.headers["location"], headers={"x-api-key": KEY}).json()["status"] == "queued"
    assert client.delete("/tasks/g-1", headers={"x-api-key": KEY}).json()["status"] == "cancelled"
    assert [m["body"]["id"] for m in api_stack.drain("sdruntime")] == ["g-1"]


@pytest.mark.parametrize("body", [b"{", b"not json at all", b"", b"\xff\xfe\x00garbage", b'{"task": '])
def test_malformed_json_is_400_with_a_json_error(client: httpx.Client, body: bytes) -> None:
    response = client.post("/tasks", content=body, headers={"x-api-key": KEY, "content-type": "application/json"})
    body_json = assert_error_shape(response, 400, "invalid_request")
    assert body_json["error"]["fields"][0]["field"] == "(body)"


def test_every_error_is_json_in_one_shape(client: httpx.Client, api_stack: ApiStack) -> None:
    key = {"x-api-key": KEY}
    client.post("/tasks", json=T2I, headers=key)
    other = {"task": {**T2I["task"], "content": {"steps": 3}}}
    unknown = {"task": {**T2I["task"], "metadata": {**T2I["task"]["metadata"], "runtime": "nope"}}}
    cases = [
        (client.post("/tasks", json=other, headers=key), 409, "conflict"),
        (client.post("/tasks", json=unknown, headers=key), 400, "invalid_request"),
        (client.get("/tasks/never", headers=key), 404, "not_found"),
        (client.get("/nowhere", headers=key), 404, "not_found"),
        (client.put("/tasks", json=T2I, headers=key), 405, "method_not_allowed"),
        (client.post("/tasks", content=b"x" * 300_000, headers=key), 413, "request_too_large"),
    ]
    for response, status, code in cases:
        assert_error_shape(response, status, code)


@pytest.mark.parametrize(
    ("length", "status", "code"),
    [(str(11 * 1024 * 1024), 413, "request_too_large"), ("nope", 400, "bad_request"), ("-5", 400, "bad_request")],
)
def test_bad_or_oversized_lengths_are_refused_unread(
    gateway: LocalGateway, length: str, status: int, code: str
) -> None:
    connection = http.client.HTTPConnection(gateway.host, gateway.port, timeout=10)
    connection.putrequest("POST", "/tasks")
    connection.putheader("x-api-key", KEY)
    connection.putheader("Content-Length", length)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == status and json.loads(response.read())["error"]["code"] == code
    assert response.getheader("connection") == "close"
    connection.close()


def test_cors_preflight_needs_no_key_and_answers_carry_cors_headers(client: httpx.Client) -> None:
    preflight = client.options(
        "/tasks", headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    answer = client.post("/tasks", json=T2I, headers={"x-api-key": KEY})
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "location" in answer.headers["access-control-expose-headers"].lower()


def test_static_files_are_served_without_a_key_and_never_outside_their_folder(client: httpx.Client) -> None:
    index = client.get("/")
    assert index.status_code == 200 and index.text == "<h1>page</h1>"
    assert index.headers["content-type"].startswith("text/html")
    script = client.get("/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for escape in ("/../conftest.py", "/%2e%2e/%2e%2e/etc/passwd", "/js/../../x"):
        assert_error_shape(client.get(escape), 404, "not_found")


def test_a_kept_alive_connection_survives_errors(gateway: LocalGateway) -> None:
    connection = http.client.HTTPConnection(gateway.host, gateway.port, timeout=10)
    statuses = []
    for body, key in ((b"{bad", KEY), (json.dumps(T2I).encode(), "wrong"), (json.dumps(T2I).encode(), KEY)):
        connection.request("POST", "/tasks", body=body, headers={"x-api-key": key})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    assert statuses == [400, 403, 202]


def test_a_crashing_handler_is_a_502_json_error(api_stack: ApiStack) -> None:
    def crash(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    def not_a_proxy_answer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"body": "no status code"}

    routes = [GatewayRoute("GET", "/crash", crash), GatewayRoute("GET", "/odd", not_a_proxy_answer)]
    with LocalGateway(None, routes) as gw, httpx.Client(base_url=gw.url) as c:
        for path in ("/crash", "/odd"):
            body = assert_error_shape(c.get(path), 502, "bad_gateway")
            assert "boom" not in json.dumps(body)


def test_the_event_reaching_the_handler_is_a_rest_proxy_event(api_stack: ApiStack) -> None:
    seen: list[dict[str, Any]] = []

    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        assert context.get_remaining_time_in_millis() > 0 and context.aws_request_id
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    with LocalGateway(KEY, [GatewayRoute("DELETE", "/tasks/{id}", record)]) as gw, httpx.Client(base_url=gw.url) as c:
        c.request("DELETE", "/tasks/a%20b?x=1&x=2&y=", headers={"x-api-key": KEY}, content=b"\xff\x00")
    [event] = seen
    assert event["resource"] == "/tasks/{id}" and event["path"] == "/tasks/a b" and event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00"
    assert event["requestContext"]["identity"]["apiKey"] == KEY and event["requestContext"]["requestId"]
    assert event["requestContext"]["resourcePath"] == "/tasks/{id}" and event["requestContext"]["stage"] == "local"


def test_per_function_handlers_serve_the_same_api(api_stack: ApiStack) -> None:
    with LocalGateway(KEY, task_api_routes(None)) as gw, httpx.Client(base_url=gw.url, headers={"x-api-key": KEY}) as c:
        assert c.post("/v1alpha2", json=T2I).status_code == 200
        assert c.get("/tasks/g-1").json()["status"] == "queued"
        assert c.delete("/tasks/g-1").status_code == 200


@pytest.mark.parametrize("tenants", [False, True], ids=["one-key", "tenants"])
def test_the_command_line_entry_serves_until_sigterm(api_stack: ApiStack, tmp_path: Path, tenants: bool) -> None:
    port = free_port()
    env = {**os.environ, "GATEWAY_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    if tenants:
        # What the local stack passes: every tenant's key, with the tenant's name as the key id.
        env = {
            **os.environ,
            "GATEWAY_API_KEYS": json.dumps({"other": "team-b", KEY: "team-a"}),
            "PYTHONPATH": str(ROOT),
        }
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack.gateway", "--port", str(port), "--static", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        response = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/tasks", json=T2I, headers={"x-api-key": KEY})
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None and response.status_code == 202, proc.stdout and proc.stdout.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0
    assert KEY not in output
    item = api_stack.item("g-1")
    assert item is not None and item["owner"] == ("team-a" if tenants else "local-key")
