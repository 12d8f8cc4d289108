"""The Powertools resolver shared by every handler: JSON responses, error mapping, logging and tracing."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from contract import ContractError, ErrorCode, error_body
from task_api.errors import ApiError, from_aws_error
from task_api.observability import logger, tracer
from task_api.settings import ConfigurationError

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

JSON = "application/json"


def json_response(status: int, body: BaseModel | dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body, separators=(",", ":"))
    # Status answers carry presigned URLs: no shared cache may keep them.
    return Response(
        status_code=status, content_type=JSON, body=text, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def request_body(event: BaseProxyEvent) -> bytes:
    """The raw body bytes (decoded when API Gateway base64-encoded it). Raises ContractError."""
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ContractError.single("(body)", "base64", "body is flagged base64 but is not valid base64") from None
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError.single("(body)", "utf8", "body is not valid UTF-8 text") from None


def caller_key_id(event: BaseProxyEvent) -> str | None:
    """The id of the API key the caller authenticated with (API Gateway fills it in; the key itself is never
    read): the task's owner."""
    identity = (event.raw_event.get("requestContext") or {}).get("identity") or {}
    key_id = identity.get("apiKeyId")
    return str(key_id) if key_id else None


def stage_prefix(event: BaseProxyEvent) -> str:
    """What the client's URL has before the resource path (``/prod`` on execute-api, ``""`` locally)."""
    if not isinstance(event, APIGatewayProxyEvent):
        return ""
    outer = normalized_path(event.request_context.path or "")
    inner = normalized_path(event.path or "")
    return outer[: -len(inner)] if inner and outer.endswith(inner) else ""


def normalized_path(path: str) -> str:
    """``//v1alpha2/`` -> ``/v1alpha2``: the replaced sample's scripts join an endpoint ending in ``/`` with
    ``/v1alpha2/``, and API Gateway REST APIs treat a trailing slash as the same resource."""
    path = re.sub(r"/{2,}", "/", path)
    return path.rstrip("/") or "/"


def build_handler(*routers: Router) -> Handler:
    """A Lambda handler serving the given routers' routes, with the API's error and logging rules."""
    # debug=False always: Powertools' debug mode prints whole events, headers and API key included.
    app = APIGatewayRestResolver(debug=False)
    for router in routers:
        app.include_router(router)
    _register_error_handlers(app)

    @tracer.capture_lambda_handler(capture_response=False)
    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True
    )
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if isinstance(event.get("path"), str):
            event = {**event, "path": normalized_path(event["path"])}
        return app.resolve(event, context)

    return handler


def _register_error_handlers(app: APIGatewayRestResolver) -> None:
    # Lookup follows the exception's MRO, so the specific handlers win over the catch-all.
    @app.exception_handler(ContractError)
    def _contract(exc: ContractError) -> Response:
        logger.info("request refused", extra={"status": exc.status, "code": exc.code, "fields": len(exc.issues)})
        return json_response(exc.status, exc.to_dict())

    @app.exception_handler(ApiError)
    def _api(exc: ApiError) -> Response:
        log = logger.warning if exc.status >= 500 else logger.info
        log("request answered with an error", extra={"status": exc.status, "code": exc.code})
        return json_response(exc.status, exc.body(), exc.headers)

    @app.exception_handler(NotFoundError)
    def _no_route(exc: NotFoundError) -> Response:
        event = app.current_event
        return json_response(404, error_body(ErrorCode.NOT_FOUND, f"no route for {event.http_method} {event.resource}"))

    @app.exception_handler(ConfigurationError)
    def _misconfigured(exc: ConfigurationError) -> Response:
        logger.error("function misconfigured", extra={"reason": str(exc)})
        return json_response(500, error_body(ErrorCode.INTERNAL_ERROR, "the service is misconfigured"))

    @app.exception_handler([BotoCoreError, ClientError])
    def _aws(exc: BotoCoreError | ClientError) -> Response:
        logger.exception("AWS call failed")
        err = from_aws_error(exc, "a backing service")
        return json_response(err.status, err.body(), err.headers)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Logged with its traceback for operators; the client sees only the request id to quote.
        logger.exception("unhandled error")
        request_id = app.current_event.request_context.request_id
        return json_response(500, error_body(ErrorCode.INTERNAL_ERROR, f"internal error (request id {request_id})"))
