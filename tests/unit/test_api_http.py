"""Reading the proxy event: body decoding and the stage prefix of the Location header."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from task_api.http import request_body, stage_prefix

from contract import ContractError


def event(**fields: Any) -> APIGatewayProxyEvent:
    base: dict[str, Any] = {"path": "/tasks", "httpMethod": "POST", "requestContext": {"path": "/tasks"}}
    return APIGatewayProxyEvent({**base, **fields})


def test_bodies_are_bytes_base64_decoded_when_flagged() -> None:
    assert request_body(event(body='{"a": "é"}')) == '{"a": "é"}'.encode()
    assert request_body(event(body=None)) == b""
    flagged = event(body=base64.b64encode(b"\xff{").decode(), isBase64Encoded=True)
    assert request_body(flagged) == b"\xff{"


@pytest.mark.parametrize(
    ("fields", "rule"),
    [({"body": "not base64!", "isBase64Encoded": True}, "base64"), ({"body": "lone \ud800 surrogate"}, "utf8")],
)
def test_undecodable_bodies_are_client_errors(fields: dict[str, Any], rule: str) -> None:
    with pytest.raises(ContractError) as refused:
        request_body(event(**fields))
    assert refused.value.issues[0].rule == rule and refused.value.status == 400


@pytest.mark.parametrize(
    ("outer", "inner", "prefix"),
    [
        ("/prod/tasks", "/tasks", "/prod"),
        ("/tasks", "/tasks", ""),
        ("/v1/api/tasks", "/tasks", "/v1/api"),
        (None, "/tasks", ""),
    ],
)
def test_the_stage_prefix_is_what_the_client_saw_before_the_resource(
    outer: str | None, inner: str, prefix: str
) -> None:
    assert stage_prefix(event(path=inner, requestContext={"path": outer})) == prefix
