"""The task API's OpenAPI 3.1 document, generated from the contract's and the views' pydantic models.

    PYTHONPATH=lambda python -m task_api.openapi docs/api/openapi.json

The committed file is checked against this generator by tests/unit/test_api_openapi.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from contract import ID_PATTERN, LegacyRequest, TaskRequest, TaskStatus
from task_api.routes import API_ROUTES
from task_api.views import LegacySubmitResponse, SubmitResponse, TaskView

VERSION = "1.0.0"
REF = "#/components/schemas/{model}"


class ErrorField(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. task.content.steps")
    rule: str = Field(description="the rule it broke, e.g. range, multiple_of, one_of, json")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_request, not_found, conflict")
    message: str
    fields: list[ErrorField] = Field(description="every offending field; empty when the error is not about fields")


class ErrorResponse(BaseModel):
    """Every error answer. ``id``/``status`` accompany conflicts; ``message`` is API Gateway's own key."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail
    id: str | None = None
    status: TaskStatus | None = Field(
        default=None, description="the task's current status (409 answers to a cancel of your own finished task)"
    )
    message: str | None = Field(default=None, description="set by API Gateway itself (403, 429, 502)")


_ERRORS: dict[str, str] = {
    "400": "invalid request: every offending field is listed",
    "403": "missing or wrong x-api-key",
    "404": "no such task of this API key (or route)",
    "409": "the id is taken (by a different request, or by another key), or the task is already finished",
    "413": "request too large: pass images as s3:// or https:// references",
    "429": "throttled by the usage plan",
    "500": "server fault (never a client mistake)",
    "503": "a backing service is unavailable; retry after Retry-After seconds",
}

_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1alpha2"): {
        "operationId": "submitV1alpha2",
        "summary": "Submit a task (the replaced sample's endpoint)",
        "ok": ("200", "SubmitResponse", "queued, or the existing task for an idempotent resubmit"),
        "errors": ["400", "403", "409", "413", "429", "500", "503"],
    },
    ("POST", "/v1alpha1"): {
        "operationId": "submitV1alpha1",
        "summary": "Submit an AUTOMATIC1111 body routed by alwayson_scripts (the replaced sample's older endpoint)",
        "ok": ("200", "LegacySubmitResponse", "queued, or the existing task for an idempotent resubmit"),
        "errors": ["400", "403", "409", "413", "429", "500", "503"],
        "body": (
            "LegacyRequest",
            "an AUTOMATIC1111 body; alwayson_scripts carries task, sd_model_checkpoint, "
            "id_task, save_dir (and optionally image_link, uid, sd_vae, override_settings)",
        ),
    },
    ("POST", "/tasks"): {
        "operationId": "submitTask",
        "summary": "Submit a task",
        "ok": ("202", "SubmitResponse", "accepted; Location names the task"),
        "errors": ["400", "403", "409", "413", "429", "500", "503"],
    },
    ("GET", "/tasks/{id}"): {
        "operationId": "getTask",
        "summary": "A task's status, with presigned URLs of its results",
        "ok": ("200", "TaskView", "the status record"),
        "errors": ["403", "404", "429", "500", "503"],
    },
    ("DELETE", "/tasks/{id}"): {
        "operationId": "cancelTask",
        "summary": "Cancel a task: queued ones at once (200), running ones on request (202)",
        "ok": ("200", "TaskView", "cancelled"),
        "also": ("202", "TaskView", "running: cancel requested, the worker interrupts it"),
        "errors": ["403", "404", "409", "429", "500", "503"],
    },
}


def build() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (TaskRequest, "validation"),
            (LegacyRequest, "validation"),
            (SubmitResponse, "serialization"),
            (LegacySubmitResponse, "serialization"),
            (TaskView, "serialization"),
            (ErrorResponse, "serialization"),
        ],
        ref_template=REF,
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in API_ROUTES:
        spec = _OPERATIONS[(route.method, route.resource)]
        paths.setdefault(route.resource, {})[route.method.lower()] = _operation(route.method, route.resource, spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Asynchronous Stable Diffusion task API",
            "version": VERSION,
            "description": (
                "Submit image generation tasks, read their status, cancel them. Results are announced on the "
                "results SNS topic and written to S3; GET /tasks/{id} presigns their URLs."
            ),
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }


def _operation(method: str, resource: str, spec: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model, description in [spec["ok"], *([spec["also"]] if "also" in spec else [])]:
        responses[status] = _json(description, model)
    if resource == "/tasks" and method == "POST":
        responses["202"]["headers"] = {
            "Location": {"description": "path of the task's status", "schema": {"type": "string"}}
        }
    for status in spec["errors"]:
        responses[status] = _json(_ERRORS[status], "ErrorResponse")
    operation: dict[str, Any] = {
        "operationId": spec["operationId"],
        "summary": spec["summary"],
        "responses": responses,
    }
    if "{id}" in resource:
        operation["parameters"] = [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_PATTERN}}
        ]
    if method == "POST":
        model, description = spec.get(
            "body",
            ("TaskRequest", "the v1alpha2 request; content is checked against the task type's fields and bounds"),
        )
        operation["requestBody"] = {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
        }
    return operation


def _json(description: str, model: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/api/openapi.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
