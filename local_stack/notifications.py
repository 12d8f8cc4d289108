"""A client-side subscription to the results topic: an SQS queue that collects completion notices."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contract import Notification
from local_stack.resources import client, subscribe_queue


@dataclass(frozen=True)
class Received:
    notification: Notification
    attributes: dict[str, str]
    received_at: float


class NotificationInbox:
    """Subscribes its own queue (raw delivery) to the results topic, like a client of the service would."""

    def __init__(self, endpoint: str, results_topic_arn: str, queue_name: str) -> None:
        self._sqs: Any = client("sqs", endpoint)
        sns = client("sns", endpoint)
        self.queue_url: str = self._sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.subscription_arn = subscribe_queue(
            sns, self._sqs, results_topic_arn, self.queue_url, arn["QueueArn"], None
        )
        self._seen: dict[str, Received] = {}

    def poll(self, wait_seconds: int = 1) -> list[Received]:
        """Receive what has arrived (long-polling up to ``wait_seconds``), parse it, delete it."""
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            MessageAttributeNames=["All"],
        )
        out = []
        for message in response.get("Messages", []):
            attributes = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
            item = Received(Notification.model_validate_json(message["Body"]), attributes, time.monotonic())
            self._seen[item.notification.id] = item
            out.append(item)
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return out

    def wait_for(self, ids: Iterable[str], timeout: float) -> dict[str, Received]:
        """Collect notifications until every id in ``ids`` has one, or raise TimeoutError naming the missing."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while not wanted <= self._seen.keys():
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(wanted - self._seen.keys()))
                raise TimeoutError(f"no notification within {timeout:.0f}s for: {missing}")
            self.poll()
        return {i: self._seen[i] for i in wanted}
