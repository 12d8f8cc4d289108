"""``GET /tasks/{id}``: the status record, result URLs presigned on every read."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from task_api.http import build_handler, caller_key_id, json_response
from task_api.service import TaskService

router = Router()


@router.get("/tasks/<task_id>")
def get_task(task_id: str) -> Response:
    return json_response(200, TaskService.from_env().status(task_id, owner=caller_key_id(router.current_event)))


handler = build_handler(router)
