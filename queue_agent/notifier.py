"""Announcing a terminal state on the results topic, always within SNS's size cap.

A notification over 256 KiB (a large ``context``, many outputs, a long error) would be refused by SNS and
the task never announced. Instead the full notification is stored in S3 next to the task's outputs and a
slim one goes out (id, status, result, ``output_url``, ``truncated: true`` and ``full_url`` naming the
stored one), so every subscriber hears of every task and can tell that the rest is elsewhere.
"""

from __future__ import annotations

import logging
from typing import Any

from contract import SNS_MAX_MESSAGE_BYTES, Notification, notification_key, s3_uri, sns_message_size

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, sns: Any, topic_arn: str, *, s3: Any = None, bucket: str = "") -> None:
        self._sns = sns
        self.topic_arn = topic_arn
        self._s3 = s3
        self.bucket = bucket

    async def publish(self, notification: Notification, prefix: str = "output") -> str:
        body = notification.model_dump_json()
        attributes = notification.message_attributes()
        size = sns_message_size(body, attributes)
        if size > SNS_MAX_MESSAGE_BYTES:
            full_url = await self._store_full(notification, body, prefix)
            log.warning("notification over the SNS cap; publishing a slim one", extra={"bytes": size})
            body = notification.slim(full_url).model_dump_json()
        resp = await self._sns.publish(TopicArn=self.topic_arn, Message=body, MessageAttributes=attributes)
        return str(resp.get("MessageId", ""))

    async def _store_full(self, notification: Notification, body: str, prefix: str) -> str:
        key = notification_key(prefix, notification.id)
        await self._s3.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/json")
        return s3_uri(self.bucket, key)
