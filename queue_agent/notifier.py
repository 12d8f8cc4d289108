"""Announcing a terminal state on the results topic."""

from __future__ import annotations

from typing import Any

from contract import Notification


class Notifier:
    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self.topic_arn = topic_arn

    async def publish(self, notification: Notification) -> str:
        resp = await self._sns.publish(
            TopicArn=self.topic_arn,
            Message=notification.model_dump_json(),
            MessageAttributes=notification.message_attributes(),
        )
        return str(resp.get("MessageId", ""))
