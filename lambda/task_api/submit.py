"""``POST /v1alpha2`` and ``POST /v1alpha1`` (the replaced sample's endpoints, 200) and ``POST /tasks``
(202 + Location)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from task_api.http import build_handler, caller_key_id, json_response, request_body, stage_prefix
from task_api.service import Submitted, TaskService
from task_api.views import legacy_submit_response, submit_response

router = Router()


def _submit() -> Submitted:
    event = router.current_event
    return TaskService.from_env().submit(request_body(event), owner=caller_key_id(event))


@router.post("/v1alpha2")
def submit_v1alpha2() -> Response:
    return json_response(200, submit_response(_submit().record))


@router.post("/v1alpha1")
def submit_v1alpha1() -> Response:
    event = router.current_event
    submitted = TaskService.from_env().submit_legacy(request_body(event), owner=caller_key_id(event))
    assert submitted.checkpoint is not None
    return json_response(200, legacy_submit_response(submitted.record, submitted.checkpoint))


@router.post("/tasks")
def submit_task() -> Response:
    record = _submit().record
    location = f"{stage_prefix(router.current_event)}/tasks/{record.id}"
    return json_response(202, submit_response(record), {"Location": location})


handler = build_handler(router)
