"""The committed OpenAPI document matches its generator, and documents exactly the routes the handlers serve."""

from __future__ import annotations

import json
from typing import Any

import pytest
from task_api import app, cancel, status, submit
from task_api.openapi import build, render
from task_api.routes import API_ROUTES

from local_stack.gateway_events import GatewayRoute, HttpRequest, LambdaContext, rest_proxy_event
from tests.conftest import ROOT

OPENAPI = ROOT / "docs" / "api" / "openapi.json"
FUNCTIONS = {"submit": submit.handler, "status": status.handler, "cancel": cancel.handler}


def test_the_committed_document_is_current() -> None:
    assert OPENAPI.read_text() == render(), (
        "docs/api/openapi.json is stale: run `PYTHONPATH=lambda .venv/bin/python -m task_api.openapi`"
    )


def test_every_route_is_documented_with_its_errors_and_the_api_key() -> None:
    doc = build()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(r.method, r.resource) for r in API_ROUTES}
    assert doc["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert "403" in op["responses"] and "500" in op["responses"], path
    assert doc["paths"]["/tasks"]["post"]["responses"]["202"]["headers"]["Location"]


def _answer(handler: Any, method: str, resource: str) -> dict[str, Any]:
    path = resource.replace("{id}", "some-id")
    route = GatewayRoute(method, resource, handler)
    event = rest_proxy_event(
        HttpRequest(method, path, "", [], b"{}"),
        route,
        route.match(path) or {},
        stage="test",
        domain="localhost",
        api_key=None,
    )
    result: dict[str, Any] = handler(event, LambdaContext(function_name="unit"))
    return result


def _serves(handler: Any, method: str, resource: str) -> bool:
    # Without AWS settings a served route answers 500 "misconfigured"; an unserved one says "no route".
    result = _answer(handler, method, resource)
    return not (result["statusCode"] == 404 and "no route" in json.loads(result["body"])["error"]["message"])


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKS_TOPIC_ARN", "STATUS_TABLE", "OUTPUT_BUCKET", "RUNTIMES"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("route", API_ROUTES, ids=lambda r: f"{r.method} {r.resource}")
def test_the_routes_table_matches_the_handlers(route: Any) -> None:
    assert _serves(app.handler, route.method, route.resource)
    for name, handler in FUNCTIONS.items():
        assert _serves(handler, route.method, route.resource) == (name == route.function), name


def test_a_handler_without_its_settings_answers_500_json_not_a_crash() -> None:
    result = _answer(app.handler, "GET", "/tasks/{id}")
    assert result["statusCode"] == 500
    assert json.loads(result["body"]) == {
        "error": {"code": "internal_error", "message": "the service is misconfigured", "fields": []}
    }
