"""Resolving the image references a task carries (``s3://`` and ``https://``) into bytes.

Which fields hold images is the contract's knowledge (``contract.iter_image_fields``); how the bytes
reach the runtime (inline base64, or an upload to ComfyUI) is the runtime adapter's. A refused
reference is a permanent failure that names the field.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract import ErrorCode, QueueMessage, RefError, RefKind, iter_image_fields, parse_image_ref
from queue_agent.aws import classify, is_transient
from queue_agent.errors import JobError, PermanentError
from queue_agent.fetch import HttpsFetcher, InputRefused

Path = tuple[str | int, ...]


def field_name(path: Path) -> str:
    return ".".join(["task.content", *map(str, path)])


@dataclass
class InputResolver:
    s3: Any
    allowed_buckets: frozenset[str]
    fetcher: HttpsFetcher

    async def resolve(self, message: QueueMessage) -> dict[Path, bytes]:
        """Bytes for every referenced input, keyed by its path in the content. Inline base64 is left alone."""
        pending: dict[Path, Any] = {}
        for path, value in iter_image_fields(message.tasktype, message.content):
            try:
                ref = parse_image_ref(value)
            except RefError as exc:
                raise InputRefused(f"{field_name(path)}: {exc}") from None
            if ref.kind is RefKind.S3:
                assert ref.bucket is not None and ref.key is not None
                if ref.bucket not in self.allowed_buckets:
                    raise InputRefused(f"{field_name(path)}: bucket {ref.bucket!r} is not an allowed input bucket")
                pending[path] = self._s3_object(ref.bucket, ref.key)
            elif ref.kind is RefKind.HTTPS:
                pending[path] = self.fetcher.fetch(ref.value)
        if not pending:
            return {}
        results = await asyncio.gather(*pending.values(), return_exceptions=True)
        resolved: dict[Path, bytes] = {}
        for path, result in zip(pending, results, strict=True):
            if isinstance(result, JobError):
                # Same kind (transient/permanent), but now the message says which field it was.
                raise type(result)(f"{field_name(path)}: {result}", code=result.code)
            if isinstance(result, BaseException):
                raise result
            resolved[path] = result
        return resolved

    async def _s3_object(self, bucket: str, key: str) -> bytes:
        max_bytes = self.fetcher.max_bytes
        try:
            resp = await self.s3.get_object(Bucket=bucket, Key=key)
            if int(resp.get("ContentLength", 0)) > max_bytes:
                resp["Body"].close()
                raise InputRefused(f"s3://{bucket}/{key} is over the {max_bytes}-byte limit")
            async with resp["Body"] as body:
                return bytes(await body.read())
        except ClientError as exc:
            if is_transient(exc):
                raise classify(exc, f"reading s3://{bucket}/{key}") from None
            raise PermanentError(f"cannot read s3://{bucket}/{key}", code=ErrorCode.INPUT_UNREADABLE) from None
