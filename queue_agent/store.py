"""The status table as the agent sees it: read a task, move it through its lifecycle, guard announcements.

Every state change is a conditional write built by ``contract.transition_update``, so a late or
duplicate writer (a crashed attempt's redelivery, a racing cancel) loses instead of overwriting a
terminal state. On top of that the agent records which terminal state it has announced (``notified``)
so that each terminal state is announced once, whoever gets there first.

Without a status table (``STATUS_TABLE`` unset) the agent still works; ``NullStatusStore`` accepts
every transition, and idempotency falls back to the ``.out`` object in S3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from contract import (
    NOTIFIED_ATTRIBUTE,
    STATUS_TTL_DAYS,
    QueueMessage,
    StatusRecord,
    TaskStatus,
    WebhookRecord,
    new_item,
    notified_update,
    transition_update,
    utcnow,
    webhook_update,
)

NOTIFIED_ATTR = NOTIFIED_ATTRIBUTE


@dataclass(frozen=True)
class TaskState:
    """The fields of a status record the agent acts on."""

    status: TaskStatus
    notified: str | None = None
    cancel_requested: bool = False
    attempts: int = 0
    image_url: list[str] = field(default_factory=list)
    output_url: str | None = None
    error: dict[str, str] | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> TaskState:
        error = item.get("error")
        return cls(
            status=TaskStatus(item["status"]),
            notified=item.get(NOTIFIED_ATTR),
            cancel_requested=bool(item.get("cancel_requested", False)),
            attempts=int(item.get("attempts", 0)),
            image_url=[str(u) for u in item.get("image_url", [])],
            output_url=item.get("output_url"),
            error={"code": str(error.get("code", "")), "message": str(error.get("message", ""))}
            if isinstance(error, dict)
            else None,
        )


class StatusStore(Protocol):
    async def get(self, task_id: str) -> TaskState | None: ...

    async def ensure(self, message: QueueMessage) -> None: ...

    async def transition(
        self, task_id: str, target: TaskStatus, *, extra: dict[str, Any] | None = None, count_attempt: bool = False
    ) -> bool: ...

    async def mark_notified(self, task_id: str, status: TaskStatus) -> bool: ...

    async def record_webhook(self, task_id: str, record: WebhookRecord) -> None: ...


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoStatusStore:
    def __init__(self, table: Any, *, clock: Any = utcnow) -> None:
        self._table = table
        self._now: Any = clock

    async def get(self, task_id: str) -> TaskState | None:
        resp = await self._table.get_item(Key={"id": task_id}, ConsistentRead=True)
        item = resp.get("Item")
        return TaskState.from_item(item) if item else None

    async def ensure(self, message: QueueMessage) -> None:
        """Create a queued record for a task that has none (published by something other than our API)."""
        now: datetime = self._now()
        record = StatusRecord(
            id=message.id,
            runtime=message.runtime,
            tasktype=str(message.tasktype),
            status=TaskStatus.QUEUED,
            prefix=message.prefix,
            created_at=message.submitted_at,
            updated_at=now,
            context=message.context,
            fingerprint=message.fingerprint,
        )
        try:
            await self._table.put_item(
                Item=new_item(record, ttl_epoch=int(time.time()) + STATUS_TTL_DAYS * 86_400),
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    async def transition(
        self, task_id: str, target: TaskStatus, *, extra: dict[str, Any] | None = None, count_attempt: bool = False
    ) -> bool:
        kwargs = transition_update(task_id, target, self._now(), extra=extra, count_attempt=count_attempt)
        try:
            await self._table.update_item(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    async def mark_notified(self, task_id: str, status: TaskStatus) -> bool:
        """Claim the announcement of ``status``; False when it was already announced."""
        try:
            await self._table.update_item(**notified_update(task_id, status))
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    async def record_webhook(self, task_id: str, record: WebhookRecord) -> None:
        try:
            await self._table.update_item(**webhook_update(task_id, record))
        except ClientError as exc:
            if not _conditional_failed(exc):  # no record (expired by its TTL): nothing to note it on
                raise


class NullStatusStore:
    """No status table: nothing is recorded and every transition is allowed."""

    async def get(self, task_id: str) -> TaskState | None:
        return None

    async def ensure(self, message: QueueMessage) -> None:
        return None

    async def transition(
        self, task_id: str, target: TaskStatus, *, extra: dict[str, Any] | None = None, count_attempt: bool = False
    ) -> bool:
        return True

    async def mark_notified(self, task_id: str, status: TaskStatus) -> bool:
        return True

    async def record_webhook(self, task_id: str, record: WebhookRecord) -> None:
        return None
