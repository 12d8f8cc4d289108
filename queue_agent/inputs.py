"""Resolving the image references a task carries (``s3://`` and ``https://``) into bytes, within its budget.

Which fields hold images is the contract's knowledge (``contract.iter_image_fields``); how the bytes
reach the runtime (inline base64, or an upload to ComfyUI) is the runtime adapter's. A refused
reference is a permanent failure that names the field.

The budget (``contract.Limits``) is enforced again here, whatever the submit path checked: the message's
content is re-validated, at most ``fetch_concurrency`` inputs download at once (agent-wide, across every
task being prepared), each body streams into a buffer counted byte by byte against its own cap and the
task's total, and each image's pixel size is read from its header before any runtime decodes it. Peak
memory therefore grows with the budget, not with what a request asks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from contract import (
    DEFAULT_LIMITS,
    ErrorCode,
    Limits,
    QueueMessage,
    RefError,
    RefKind,
    content_issues,
    image_size,
    input_image_issues,
    iter_image_fields,
    parse_image_ref,
)
from queue_agent.aws import classify, is_transient
from queue_agent.errors import JobError, PermanentError
from queue_agent.fetch import ByteBudget, HttpsFetcher, InputRefused

Path = tuple[str | int, ...]
S3_CHUNK = 256 * 1024
DEFAULT_FETCH_CONCURRENCY = 4


def field_name(path: Path) -> str:
    return ".".join(["task.content", *map(str, path)])


@dataclass
class InputResolver:
    s3: Any
    allowed_buckets: frozenset[str]
    fetcher: HttpsFetcher
    limits: Limits = DEFAULT_LIMITS
    fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY
    _slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.fetch_concurrency)

    async def resolve(self, message: QueueMessage) -> dict[Path, bytes]:
        """Bytes for every referenced input, keyed by its path in the content. Inline base64 is left alone."""
        issues = content_issues(message.tasktype, message.content, self.limits)
        if issues:
            first = issues[0]
            more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
            raise InputRefused(f"{first.field}: {first.message}{more}")
        budget = ByteBudget(self.limits.max_total_input_bytes)
        pending: dict[Path, Callable[[], Awaitable[bytes]]] = {}
        for path, value in iter_image_fields(message.tasktype, message.content):
            try:
                ref = parse_image_ref(value)
            except RefError as exc:
                raise InputRefused(f"{field_name(path)}: {exc}") from None
            if ref.kind is RefKind.S3:
                assert ref.bucket is not None and ref.key is not None
                if ref.bucket not in self.allowed_buckets:
                    raise InputRefused(f"{field_name(path)}: bucket {ref.bucket!r} is not an allowed input bucket")
                pending[path] = _bind(self._s3_object, ref.bucket, ref.key, budget)
            elif ref.kind is RefKind.HTTPS:
                pending[path] = _bind(self.fetcher.fetch, ref.value, budget)
        if not pending:
            return {}
        tasks = {asyncio.ensure_future(self._one(message, path, start)): path for path, start in pending.items()}
        try:
            # The first failure ends the whole task: the other downloads stop at once.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if (failure := task.exception()) is not None:
                    raise failure
            return {tasks[t]: t.result() for t in tasks}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, message: QueueMessage, path: Path, start: Callable[[], Awaitable[bytes]]) -> bytes:
        async with self._slots:
            try:
                data = await start()
            except JobError as exc:
                # Same kind (transient/permanent), but now the message says which field it was.
                raise type(exc)(f"{field_name(path)}: {exc}", code=exc.code) from None
        size = image_size(data)
        if size is not None:
            issues = input_image_issues(message.tasktype, message.content, path, size, self.limits)
            if issues:
                raise InputRefused(f"{issues[0].field}: {issues[0].message}")
        return data

    async def _s3_object(self, bucket: str, key: str, budget: ByteBudget) -> bytes:
        max_bytes = min(self.fetcher.max_bytes, self.limits.max_input_bytes)
        try:
            resp = await self.s3.get_object(Bucket=bucket, Key=key)
            body = resp["Body"]
            async with body:
                if int(resp.get("ContentLength", 0)) > max_bytes:
                    raise InputRefused(f"s3://{bucket}/{key} is over the {max_bytes}-byte limit")
                buffer = bytearray()
                while chunk := await body.read(S3_CHUNK):
                    if len(buffer) + len(chunk) > max_bytes:
                        raise InputRefused(f"s3://{bucket}/{key} is over the {max_bytes}-byte limit")
                    budget.charge(len(chunk))
                    buffer += chunk
                return bytes(buffer)
        except ClientError as exc:
            if is_transient(exc):
                raise classify(exc, f"reading s3://{bucket}/{key}") from None
            raise PermanentError(f"cannot read s3://{bucket}/{key}", code=ErrorCode.INPUT_UNREADABLE) from None


def _bind(fn: Callable[..., Awaitable[bytes]], *args: Any) -> Callable[[], Awaitable[bytes]]:
    # Coroutines are created only when a slot is free: nothing waits half-started.
    return lambda: fn(*args)
