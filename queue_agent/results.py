"""Job outputs in S3, at the contract's deterministic keys, owned by the submission that wrote them.

The images go first and the ``.out`` document last: its presence means the whole result is there,
which is what the idempotency check relies on. Every object carries the submission's nonce and the
request fingerprint (object metadata, and fields of ``.out``), so that:

- a redelivery of the same submission finds and re-announces its own result, and only that;
- a later submission that reuses an id (after the first one's record expired) never adopts the old
  outputs: it runs, and replaces them;
- a duplicate run of the same submission (a lost lease) never overwrites what another run already
  completed: writes are conditional (``If-None-Match: *``, or ``If-Match`` on the exact object being
  replaced), and a run that finds the submission's ``.out`` in place adopts it instead of writing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract import QueueMessage, image_key, output_key, s3_uri
from queue_agent.job import RuntimeResult, StoredResult

# Object metadata (x-amz-meta-*) naming the submission an object belongs to.
NONCE_META = "nonce"
FINGERPRINT_META = "fingerprint"
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
# A conditional write lost to a concurrent writer (409: a concurrent conditional write to the same key).
_LOST_RACE = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class CompletedElsewhere(Exception):
    """Another run of the same submission stored its complete result first; ``stored`` is that result."""

    def __init__(self, stored: StoredResult) -> None:
        super().__init__("another run of this submission already stored its result")
        self.stored = stored


@dataclass(frozen=True)
class _Existing:
    etag: str
    ours: bool  # written by this submission (same nonce and fingerprint)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class ResultStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    async def write(self, message: QueueMessage, result: RuntimeResult) -> StoredResult:
        """Store the result of ``message``'s run; the result another run of it stored first, if one did."""
        if (earlier := await self.find(message)) is not None:
            return earlier
        keys = [image_key(message.prefix, message.id, n, a.ext) for n, a in enumerate(result.artifacts, start=1)]
        try:
            await asyncio.gather(
                *(
                    self._put(message, key, a.data, a.content_type)
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
                "nonce": message.nonce,
                "fingerprint": message.fingerprint,
            }
            await self._put(message, out_key, json.dumps(document, default=str).encode(), "application/json")
        except CompletedElsewhere as done:
            return done.stored
        return StoredResult(urls, s3_uri(self.bucket, out_key))

    async def find(self, message: QueueMessage) -> StoredResult | None:
        """The result an earlier run of this same submission stored, if its ``.out`` document exists."""
        key = output_key(message.prefix, message.id)
        try:
            resp = await self._s3.get_object(Bucket=self.bucket, Key=key)
            async with resp["Body"] as body:
                raw = await body.read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(document, dict) or not _same_submission(document, message):
            # Another submission's (an id reused after its record expired), or from before nonces: not ours.
            return None
        urls = document.get("image_url")
        return StoredResult([str(u) for u in urls] if isinstance(urls, list) else [], s3_uri(self.bucket, key))

    async def _put(self, message: QueueMessage, key: str, body: bytes, content_type: str) -> None:
        """Create ``key``, or replace what is there when it is not a completed result of this submission."""
        args = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "Metadata": {NONCE_META: message.nonce, FINGERPRINT_META: message.fingerprint},
        }
        condition: dict[str, str] = {"IfNoneMatch": "*"}
        for _ in range(3):
            try:
                await self._s3.put_object(**args, **condition)
                return
            except ClientError as exc:
                if _code(exc) not in _LOST_RACE:
                    raise
            existing = await self._head(key, message)
            if existing is None:
                condition = {"IfNoneMatch": "*"}  # deleted meanwhile
                continue
            if existing.ours and (done := await self.find(message)) is not None:
                raise CompletedElsewhere(done)
            # Another submission's leftovers, or this submission's unfinished attempt: replace exactly that object.
            condition = {"IfMatch": existing.etag}
        raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": f"{key} kept changing"}}, "PutObject")

    async def _head(self, key: str, message: QueueMessage) -> _Existing | None:
        try:
            head = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        meta = head.get("Metadata") or {}
        return _Existing(str(head["ETag"]), _same_submission(meta, message))


def _same_submission(fields: dict[str, Any], message: QueueMessage) -> bool:
    return fields.get("nonce") == message.nonce and fields.get("fingerprint") == message.fingerprint
