"""Job outputs in S3, at the contract's deterministic keys (a re-run overwrites, never multiplies).

The images go first and the ``.out`` document last: its presence means the whole result is there,
which is what the idempotency check relies on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from botocore.exceptions import ClientError

from contract import QueueMessage, image_key, output_key, s3_uri
from queue_agent.job import RuntimeResult, StoredResult


class ResultStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    async def write(self, message: QueueMessage, result: RuntimeResult) -> StoredResult:
        keys = [image_key(message.prefix, message.id, n, a.ext) for n, a in enumerate(result.artifacts, start=1)]
        await asyncio.gather(
            *(
                self._s3.put_object(Bucket=self.bucket, Key=key, Body=a.data, ContentType=a.content_type)
                for key, a in zip(keys, result.artifacts, strict=True)
            )
        )
        urls = [s3_uri(self.bucket, key) for key in keys]
        out_key = output_key(message.prefix, message.id)
        document = {
            **result.document,
            "id": message.id,
            "runtime": message.runtime,
            "tasktype": str(message.tasktype),
            "image_url": urls,
        }
        await self._s3.put_object(
            Bucket=self.bucket,
            Key=out_key,
            Body=json.dumps(document, default=str).encode(),
            ContentType="application/json",
        )
        return StoredResult(urls, s3_uri(self.bucket, out_key))

    async def find(self, message: QueueMessage) -> StoredResult | None:
        """The result an earlier delivery already stored, if its ``.out`` document exists."""
        key = output_key(message.prefix, message.id)
        try:
            resp = await self._s3.get_object(Bucket=self.bucket, Key=key)
            async with resp["Body"] as body:
                raw = await body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise
        try:
            urls = json.loads(raw).get("image_url", [])
        except (ValueError, AttributeError):
            urls = []
        return StoredResult([str(u) for u in urls], s3_uri(self.bucket, key))
