"""``DELETE /tasks/{id}``: 200 when a queued task is cancelled, 202 when a running one is asked to stop."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from task_api.http import build_handler, caller_key_id, json_response
from task_api.service import TaskService

router = Router()


@router.delete("/tasks/<task_id>")
def cancel_task(task_id: str) -> Response:
    outcome = TaskService.from_env().cancel(task_id, owner=caller_key_id(router.current_event))
    return json_response(200 if outcome.finished else 202, outcome.view)


handler = build_handler(router)
