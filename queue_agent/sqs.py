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


class PriorityQueues(TaskQueue):
    """A runtime's high-priority queue and its normal one, used as one queue.

    Every receive looks at the high queue first (without waiting) and takes the normal queue only when the
    high one is empty, except one receive in ``1 / normal_share``, which looks at the normal queue first, so
    that a flood of high-priority tasks never starves the normal ones for ever. While both are empty the
    normal queue is long-polled for at most ``high_poll`` seconds at a time, so that a high-priority task
    waits no longer than that for an idle agent. Receipts remember their queue for the later calls.
    """

    def __init__(self, sqs: Any, url: str, high_url: str, *, normal_share: float, high_poll: int = 1) -> None:
        super().__init__(sqs, url)
        self.normal = TaskQueue(sqs, url)
        self.high = TaskQueue(sqs, high_url)
        self._every = max(1, round(1 / normal_share)) if normal_share > 0 else 0
        self._high_poll = high_poll
        self._receives = 0
        self._owner: dict[str, TaskQueue] = {}

    async def receive(self, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[Delivery]:
        self._receives += 1
        normal_first = self._every and self._receives % self._every == 0
        order = (self.normal, self.high) if normal_first else (self.high, self.normal)
        for queue in order:
            # Only the last look waits: the first one must not hold a message of the other queue back.
            wait = min(wait_seconds, self._high_poll) if queue is order[-1] else 0
            deliveries = await queue.receive(max_messages, wait, visibility_timeout)
            if deliveries:
                for delivery in deliveries:
                    self._owner[delivery.receipt_handle] = queue
                return deliveries
        return []

    def _queue_of(self, receipt: str) -> TaskQueue:
        return self._owner.get(receipt, self.normal)

    async def extend(self, receipts: list[str], seconds: int) -> set[str]:
        lost: set[str] = set()
        for queue in (self.high, self.normal):
            mine = [r for r in receipts if self._queue_of(r) is queue]
            if mine:
                lost |= await queue.extend(mine, seconds)
        return lost

    async def set_visibility(self, receipt: str, seconds: int) -> bool:
        # Handed back: the next receive of it comes with a new receipt.
        return await self._owner.pop(receipt, self.normal).set_visibility(receipt, seconds)

    async def delete(self, receipt: str) -> bool:
        queue = self._owner.pop(receipt, self.normal)
        return await queue.delete(receipt)
