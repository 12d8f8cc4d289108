"""The local gateway's pure parts: route templates, REST proxy events, proxy answers, static paths."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from local_stack.gateway import LocalGateway, _proxy_response
from local_stack.gateway_events import GatewayRoute, HttpRequest, LambdaContext, rest_proxy_event


def _noop(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 204}


@pytest.mark.parametrize(
    ("resource", "path", "expected"),
    [
        ("/tasks", "/tasks", {}),
        ("/tasks", "/tasks/", None),
        ("/tasks/{id}", "/tasks/abc-1", {"id": "abc-1"}),
        ("/tasks/{id}", "/tasks/a%2Fb", {"id": "a/b"}),
        ("/tasks/{id}", "/tasks/a/b", None),
        ("/tasks/{id}", "/tasks/", None),
        ("/v1alpha2", "/v1alpha2x", None),
        ("/a.b/{x}", "/aXb/1", None),  # the template's '.' is literal
    ],
)
def test_resource_templates_match_one_segment_per_parameter(
    resource: str, path: str, expected: dict[str, str] | None
) -> None:
    assert GatewayRoute("GET", resource, _noop).match(path) == expected


def test_the_event_has_the_rest_proxy_shape() -> None:
    route = GatewayRoute("POST", "/tasks", _noop)
    request = HttpRequest(
        "POST",
        "/tasks",
        "a=1&a=2&b=",
        [("Content-Type", "application/json"), ("X-Multi", "1"), ("X-Multi", "2"), ("User-Agent", "ua")],
        b'{"k": 1}',
        source_ip="10.0.0.9",
    )
    event = rest_proxy_event(request, route, {}, stage="dev", domain="localhost:8000", api_key="secret")
    assert set(event) >= {
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "requestContext",
        "body",
        "isBase64Encoded",
    }
    assert event["headers"]["X-Multi"] == "2" and event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["pathParameters"] is None and event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "dev" and context["resourcePath"] == "/tasks" and context["httpMethod"] == "POST"
    assert context["identity"]["sourceIp"] == "10.0.0.9" and context["identity"]["userAgent"] == "ua"
    assert (
        context["requestId"]
        != rest_proxy_event(request, route, {}, stage="dev", domain="d", api_key=None)["requestContext"]["requestId"]
    )


def test_an_empty_body_is_null_and_binary_is_base64() -> None:
    route = GatewayRoute("POST", "/tasks", _noop)
    empty = rest_proxy_event(HttpRequest("POST", "/tasks", "", [], b""), route, {}, stage="s", domain="d", api_key=None)
    assert empty["body"] is None and empty["queryStringParameters"] is None and empty["headers"] is None
    binary = rest_proxy_event(
        HttpRequest("POST", "/tasks", "", [], b"\x89PNG\xff"), route, {}, stage="s", domain="d", api_key=None
    )
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x89PNG\xff"


def test_the_context_counts_down() -> None:
    context = LambdaContext(function_name="f", timeout_seconds=3)
    assert 0 < context.get_remaining_time_in_millis() <= 3000
    assert context.invoked_function_arn.endswith(":function:f") and context.aws_request_id


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"statusCode": 200, "headers": {"A": "1"}, "body": "x"}, (200, {"A": "1"}, b"x")),
        ({"statusCode": 201, "multiValueHeaders": {"B": ["1", "2"]}, "body": None}, (201, {"B": "1, 2"}, b"")),
        ({"statusCode": 200, "body": base64.b64encode(b"\xff").decode(), "isBase64Encoded": True}, (200, {}, b"\xff")),
    ],
)
def test_proxy_answers_are_decoded(result: dict[str, Any], expected: tuple[int, dict[str, str], bytes]) -> None:
    assert _proxy_response(result) == expected


@pytest.mark.parametrize("result", [None, {}, {"statusCode": "200"}, {"statusCode": 200, "body": {"a": 1}}])
def test_malformed_proxy_answers_are_refused(result: Any) -> None:
    with pytest.raises(ValueError):
        _proxy_response(result)


def test_static_paths_stay_inside_the_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("i")
    (site / "sub" / "index.html").write_text("s")
    (tmp_path / "secret.txt").write_text("no")
    (site / "link").symlink_to(tmp_path / "secret.txt")
    gateway = LocalGateway(None, [], static_dir=site)
    assert gateway.static_file("/") == (site / "index.html").resolve()
    assert gateway.static_file("/sub/") == (site / "sub" / "index.html").resolve()
    for outside in ("/../secret.txt", "/%2e%2e/secret.txt", "/link", "/missing.js", "/sub/../../secret.txt"):
        assert gateway.static_file(outside) is None, outside
    assert LocalGateway(None, []).static_file("/") is None
