"""The normalized queue message the submit Lambda publishes and the agent consumes.

The agent also accepts everything the replaced sample ever put on a queue, with or without the SNS
envelope, so it can drain an existing queue during a migration: the v1alpha2 task object as it was
(``{"metadata", "content"}``, also still wrapped in ``{"task": ...}``) and the v1alpha1 message
(``metadata.runtime == "legacy"``, an AUTOMATIC1111 body routed by ``sd_model_checkpoint``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import ContractError
from contract.legacy import LEGACY_RUNTIME, LegacyTask, legacy_task_from_message
from contract.request import ID_PATTERN, TaskRequest, parse_request
from contract.tasks import TaskType
from contract.webhooks import Priority, WebhookTarget

SCHEMA_VERSION: Literal["1"] = "1"


def utcnow() -> datetime:
    return datetime.now(UTC)


class QueueMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: Literal["1"] = SCHEMA_VERSION
    id: str = Field(pattern=ID_PATTERN)
    runtime: str
    tasktype: TaskType
    prefix: str = "output"
    context: Any = None
    content: dict[str, Any]
    submitted_at: datetime = Field(default_factory=utcnow)
    fingerprint: str = ""
    # The checkpoint a v1alpha1 task named in alwayson_scripts (it was routed on it); None otherwise.
    checkpoint: str | None = None
    # Random per accepted submission (see StatusRecord.nonce); "" for messages published outside the API.
    nonce: str = ""
    webhook: WebhookTarget | None = None
    # submitted_at + ttl_seconds: not started by then, the task ends ``expired`` without running.
    expires_at: datetime | None = None
    priority: Priority = Priority.NORMAL

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    @property
    def sd_model_checkpoint(self) -> str | None:
        """The model a text/image task asks for: a runtime with dynamic models switches to it, and the
        replaced sample's queues were routed on it."""
        overrides = self.content.get("override_settings")
        if isinstance(overrides, dict) and isinstance(overrides.get("sd_model_checkpoint"), str):
            return str(overrides["sd_model_checkpoint"])
        return self.checkpoint

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """SNS message attributes the per-runtime subscriptions filter on."""
        priority = {"priority": {"DataType": "String", "StringValue": self.priority.value}}
        if self.priority is Priority.HIGH:
            # Addressed by ``runtime_high`` alone, so that only the runtime's high-priority subscription matches
            # (a plain filter: the normal subscriptions keep theirs, and absent attributes stay normal).
            return {"runtime_high": {"DataType": "String", "StringValue": self.runtime}, **priority}
        attrs = {"runtime": {"DataType": "String", "StringValue": self.runtime}, **priority}
        if (model := self.sd_model_checkpoint) is not None:
            attrs["sd_model_checkpoint"] = {"DataType": "String", "StringValue": model}
        return attrs


def fingerprint(request: TaskRequest) -> str:
    """A stable hash of what the client asked for, to tell a retry from a conflicting reuse of an id."""
    task = request.task
    canonical = {
        "runtime": task.metadata.runtime,
        "tasktype": str(task.metadata.tasktype),
        "prefix": task.metadata.prefix,
        "context": task.metadata.context,
        "content": task.content,
    }
    # Only when set, so that a request without them keeps the fingerprint it always had.
    meta = task.metadata
    if meta.webhook is not None:
        canonical["webhook"] = meta.webhook.model_dump(mode="json")
    if meta.ttl_seconds is not None:
        canonical["ttl_seconds"] = meta.ttl_seconds
    if meta.priority is not Priority.NORMAL:
        canonical["priority"] = meta.priority.value
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def to_queue_message(
    request: TaskRequest, *, submitted_at: datetime | None = None, checkpoint: str | None = None, nonce: str = ""
) -> QueueMessage:
    meta = request.task.metadata
    if meta.id is None:
        raise ValueError("request has no id; parse it with parse_request first")
    submitted = submitted_at or utcnow()
    return QueueMessage(
        id=meta.id,
        runtime=meta.runtime,
        tasktype=meta.tasktype,
        prefix=meta.prefix,
        context=meta.context,
        content=request.task.content,
        submitted_at=submitted,
        fingerprint=fingerprint(request),
        checkpoint=checkpoint,
        nonce=nonce,
        webhook=meta.webhook,
        expires_at=submitted + timedelta(seconds=meta.ttl_seconds) if meta.ttl_seconds else None,
        priority=meta.priority,
    )


def legacy_request(task: LegacyTask, runtime: str, context: Any = None) -> TaskRequest:
    """A v1alpha1 task as the ordinary request it amounts to, addressed to ``runtime``."""
    return TaskRequest.model_validate(
        {
            "task": {
                "metadata": {
                    "id": task.id,
                    "runtime": runtime,
                    "tasktype": task.tasktype,
                    "prefix": task.prefix,
                    "context": context,
                },
                "content": task.content,
            }
        }
    )


def parse_queue_body(body: str, *, legacy_runtime: str = LEGACY_RUNTIME) -> QueueMessage:
    """Decode an SQS body: raw or SNS-enveloped; our normalized message, or any shape the replaced sample
    published. ``legacy_runtime``: the runtime a v1alpha1 message (routed by model, not by name) is for,
    which is the queue's it arrived on."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ContractError.single("(message)", "json", f"queue message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError.single("(message)", "object", "queue message must be a JSON object")
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse_queue_body(data["Message"], legacy_runtime=legacy_runtime)
    if "schema_version" in data:
        try:
            return QueueMessage.model_validate(data)
        except ValidationError as exc:
            raise ContractError.from_validation_error(exc, prefix="(message)") from None
    if "task" not in data and isinstance(data.get("metadata"), dict):
        metadata = data["metadata"]
        if metadata.get("runtime") == LEGACY_RUNTIME:
            task = legacy_task_from_message(metadata, data.get("content"))
            request = legacy_request(task, legacy_runtime, metadata.get("context"))
            return to_queue_message(request, checkpoint=task.checkpoint)
        # The sample's v1alpha2 Lambda published the request's task object as it was.
        data = {"task": data}
    return to_queue_message(parse_request(data))
