"""The task queue: every SQS call the agent makes goes through this class."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from queue_agent.job import Delivery

log = logging.getLogger(__name__)

# Errors that mean "this receipt handle no longer holds the message": it was deleted, or its
# visibility ran out and someone else received it. Nothing to retry; idempotency covers the rest.
_STALE_RECEIPT = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})


@dataclass(frozen=True)
class QueueInfo:
    visibility_timeout: int
    # None when the queue has no dead-letter queue: then nothing is ever final, SQS redelivers forever.
    max_receive_count: int | None


class TaskQueue:
    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs = sqs
        self.url = url

    async def info(self) -> QueueInfo:
        resp = await self._sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )
        attrs = resp.get("Attributes", {})
        redrive = attrs.get("RedrivePolicy")
        max_receive = int(json.loads(redrive)["maxReceiveCount"]) if redrive else None
        return QueueInfo(int(attrs.get("VisibilityTimeout", "30")), max_receive)

    async def receive(self, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[Delivery]:
        """One long poll. Returns at once when messages are there, after ``wait_seconds`` otherwise."""
        started = time.monotonic()
        resp = await self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(max_messages, 10)),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp", "AWSTraceHeader"],
        )
        now = time.monotonic()
        return [
            Delivery.from_sqs(msg, received_at=now, receive_wait=round(now - started, 4))
            for msg in resp.get("Messages", [])
        ]

    async def extend(self, receipts: list[str], seconds: int) -> set[str]:
        """Set the visibility of several held messages; returns the receipts that are no longer held."""
        lost: set[str] = set()
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            resp = await self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                    for i, handle in enumerate(chunk)
                ],
            )
            for failed in resp.get("Failed", []):
                handle = chunk[int(failed["Id"])]
                if failed.get("SenderFault", True):
                    lost.add(handle)
                log.warning("visibility extension refused", extra={"code": failed.get("Code")})
        return lost

    async def set_visibility(self, receipt: str, seconds: int) -> bool:
        """Make a held message visible again after ``seconds`` (0: at once). False if it was not held."""
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except ClientError as exc:
            if _stale(exc):
                return False
            raise
        return True

    async def delete(self, receipt: str) -> bool:
        """Delete a finished message. False if the receipt was stale (the message may come back)."""
        try:
            await self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)
        except ClientError as exc:
            if _stale(exc):
                log.warning("delete refused: receipt no longer valid, a redelivery will be deduplicated")
                return False
            raise
        return True


def _stale(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in _STALE_RECEIPT or code.endswith("ReceiptHandleIsInvalid") or code.endswith("MessageNotInflight")
