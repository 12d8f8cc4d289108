"""The status record (one DynamoDB item per task) and the only writes allowed on it.

Updates are expressed as DynamoDB UpdateItem arguments so that the sync Lambda client and the
async agent client apply exactly the same conditions: terminal states never regress.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contract.notification import ErrorInfo
from contract.tasks import ALLOWED_PREDECESSORS, TaskStatus
from contract.webhooks import WebhookRecord

STATUS_TTL_DAYS = 30


class StatusRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    runtime: str
    tasktype: str
    status: TaskStatus
    prefix: str = "output"
    attempts: int = 0
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    output_location: str | None = None
    image_url: list[str] = Field(default_factory=list)
    output_url: str | None = None
    error: ErrorInfo | None = None
    context: Any = None
    fingerprint: str = ""
    # The submission that holds this id: a fresh random value per accepted submit, also in the queue
    # message and the .out document, so that results are only ever matched to their own submission.
    nonce: str = ""
    # The API key id (API Gateway's requestContext.identity.apiKeyId) that submitted the task; only that
    # key sees or cancels it. None for records created before ownership, or outside the API.
    owner: str | None = None
    priority: str = "normal"
    # When a task that has not started by then expires (submission + ttl_seconds).
    expires_at: datetime | None = None
    # Deliveries to the task's webhook, if it has one: how many attempts, the last answer.
    webhook: WebhookRecord | None = None


def webhook_update(task_id: str, record: WebhookRecord) -> dict[str, Any]:
    """Record the webhook deliveries of a task (whatever its status: they come after the terminal write)."""
    return {
        "Key": {"id": task_id},
        "UpdateExpression": "SET #w = :w",
        "ConditionExpression": "attribute_exists(id)",
        "ExpressionAttributeNames": {"#w": "webhook"},
        "ExpressionAttributeValues": {":w": record.model_dump(mode="json")},
    }


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def new_item(record: StatusRecord, *, ttl_epoch: int | None = None) -> dict[str, Any]:
    """Plain-python item for a conditional put (attribute_not_exists(id))."""
    item = record.model_dump(mode="json", exclude_none=True)
    if ttl_epoch is not None:
        item["expires_at"] = ttl_epoch
    return item


def transition_update(
    task_id: str,
    target: TaskStatus,
    now: datetime,
    *,
    extra: dict[str, Any] | None = None,
    count_attempt: bool = False,
) -> dict[str, Any]:
    """UpdateItem keyword arguments (plain values, for the resource/Table API) moving a task to ``target``.

    The condition admits only the predecessors the lifecycle allows, so a late or duplicate
    writer fails with ConditionalCheckFailed instead of overwriting a terminal state.
    """
    preds = sorted(p.value for p in ALLOWED_PREDECESSORS[target])
    if not preds:
        raise ValueError(f"no update leads to {target}: records are created in that state by a conditional put")
    names = {"#s": "status", "#u": "updated_at"}
    values: dict[str, Any] = {":target": target.value, ":now": _iso(now)}
    sets = ["#s = :target", "#u = :now"]
    if target is TaskStatus.RUNNING:
        names["#st"] = "started_at"
        sets.append("#st = if_not_exists(#st, :now)")
    if target.terminal:
        names["#f"] = "finished_at"
        sets.append("#f = :now")
    for i, (key, value) in enumerate(sorted((extra or {}).items())):
        names[f"#x{i}"] = key
        values[f":x{i}"] = value
        sets.append(f"#x{i} = :x{i}")
    update = "SET " + ", ".join(sets)
    if count_attempt:
        names["#a"] = "attempts"
        values[":one"] = 1
        update += " ADD #a :one"
    for i, p in enumerate(preds):
        values[f":p{i}"] = p
    condition = "attribute_exists(id) AND #s IN (" + ", ".join(f":p{i}" for i in range(len(preds))) + ")"
    return {
        "Key": {"id": task_id},
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def cancel_request_update(task_id: str, now: datetime) -> dict[str, Any]:
    """Mark a running task cancel-requested (the agent interrupts the runtime); only while running."""
    return {
        "Key": {"id": task_id},
        "UpdateExpression": "SET #c = :true, #u = :now",
        "ConditionExpression": "attribute_exists(id) AND #s = :running",
        "ExpressionAttributeNames": {"#c": "cancel_requested", "#u": "updated_at", "#s": "status"},
        "ExpressionAttributeValues": {":true": True, ":now": _iso(now), ":running": TaskStatus.RUNNING.value},
    }


# The terminal status that has been announced on the results topic: each is announced once.
NOTIFIED_ATTRIBUTE = "notified"


def notified_update(task_id: str, status: TaskStatus) -> dict[str, Any]:
    """Claim the announcement of ``status``; fails (conditional) when the task was announced already."""
    return {
        "Key": {"id": task_id},
        "UpdateExpression": "SET #n = :s",
        "ConditionExpression": "attribute_exists(id) AND attribute_not_exists(#n)",
        "ExpressionAttributeNames": {"#n": NOTIFIED_ATTRIBUTE},
        "ExpressionAttributeValues": {":s": status.value},
    }


def requeue_update(task_id: str, now: datetime) -> dict[str, Any]:
    """Put a task back to queued for a redrive of its dead-lettered message (an operator's explicit retry).

    The one way out of ``failed``: the message is about to be delivered again, so the record must let the agent
    run it rather than treat it as finished. Completed and cancelled tasks are never reset.
    """
    return {
        "Key": {"id": task_id},
        "UpdateExpression": "SET #s = :queued, #u = :now REMOVE #n, #e, #f, #c",
        "ConditionExpression": "attribute_exists(id) AND #s IN (:queued, :running, :failed)",
        "ExpressionAttributeNames": {
            "#s": "status",
            "#u": "updated_at",
            "#n": NOTIFIED_ATTRIBUTE,
            "#e": "error",
            "#f": "finished_at",
            "#c": "cancel_requested",
        },
        "ExpressionAttributeValues": {
            ":queued": TaskStatus.QUEUED.value,
            ":running": TaskStatus.RUNNING.value,
            ":failed": TaskStatus.FAILED.value,
            ":now": _iso(now),
        },
    }
