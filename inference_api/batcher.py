"""A small async micro-batcher: compatible concurrent jobs share one pipeline call.

One collector task owns the (single) inference worker. It takes the oldest waiting job, then gathers
compatible jobs (same ``batch_key()``) until the batch holds ``max_batch`` images or ``window`` seconds
have passed; incompatible jobs wait, in arrival order, for the next round. While a batch runs, new jobs
queue up and are merged in the next round without any extra wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Batchable(Protocol):
    @property
    def image_count(self) -> int: ...

    @property
    def mergeable(self) -> bool: ...

    def batch_key(self) -> Hashable: ...


J = TypeVar("J", bound=Batchable)


@dataclass
class BatcherStats:
    batches: int = 0
    requests: int = 0
    merged_batches: int = 0  # batches that carried more than one request
    merged_requests: int = 0  # requests that ran in such a batch
    largest_batch: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Pending(Generic[J]):
    job: J
    future: asyncio.Future[Any]


class QueueFull(Exception):
    """More requests are waiting than the batcher accepts (``max_waiting``)."""


class MicroBatcher(Generic[J]):
    def __init__(
        self,
        run: Callable[[list[J]], Awaitable[list[Any]]],
        *,
        max_batch: int = 4,
        window: float = 0.01,
        max_waiting: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self.window = window
        self.max_waiting = max_waiting
        self._incoming: deque[_Pending[J]] = deque()
        self._arrived = asyncio.Event()
        self._deferred: deque[_Pending[J]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.stats = BatcherStats()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pending in [*self._deferred, *self._incoming]:
            if not pending.future.done():
                pending.future.cancel()
        self._deferred.clear()
        self._incoming.clear()

    @property
    def waiting(self) -> int:
        """Requests queued for the worker (not counting the batch that runs)."""
        return len(self._incoming) + len(self._deferred)

    async def submit(self, job: J) -> Any:
        """The job's result. Raises :class:`QueueFull` at once when ``max_waiting`` requests already wait.

        A caller that is cancelled (its client went away) takes its job out of the queue.
        """
        if self.max_waiting is not None and self.waiting >= self.max_waiting:
            raise QueueFull(f"{self.waiting} requests are already waiting")
        pending = _Pending(job, asyncio.get_running_loop().create_future())
        self._incoming.append(pending)
        self._arrived.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._discard(pending)
            raise

    def _discard(self, pending: _Pending[J]) -> None:
        for queue in (self._incoming, self._deferred):
            with contextlib.suppress(ValueError):
                queue.remove(pending)
        pending.future.cancel()

    async def _loop(self) -> None:
        while True:
            first = await self._next()
            batch = [first]
            if first.job.mergeable and self.max_batch > 1:
                await self._gather(batch)
            jobs = [p.job for p in batch]
            try:
                results = await self._run(jobs)
            except asyncio.CancelledError:
                for p in batch:
                    p.future.cancel()
                raise
            except BaseException as exc:  # the error belongs to the callers, the loop must go on
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self._record(len(batch))
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    if isinstance(result, BaseException):
                        p.future.set_exception(result)
                    else:
                        p.future.set_result(result)

    async def _next(self) -> _Pending[J]:
        while True:
            pending = self._deferred.popleft() if self._deferred else await self._pop(None)
            if pending is not None and not pending.future.done():  # a caller that went away needs no run
                return pending

    async def _gather(self, batch: list[_Pending[J]]) -> None:
        key = batch[0].job.batch_key()
        images = batch[0].job.image_count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        # Jobs deferred from an earlier round come first, in order; the rest stay deferred.
        keep: deque[_Pending[J]] = deque()
        while self._deferred:
            pending = self._deferred.popleft()
            if self._fits(pending, key, images):
                batch.append(pending)
                images += pending.job.image_count
            else:
                keep.append(pending)
        self._deferred = keep
        while images < self.max_batch:
            incoming = await self._pop(deadline)
            if incoming is None:
                break
            if incoming.future.done():
                continue
            if self._fits(incoming, key, images):
                batch.append(incoming)
                images += incoming.job.image_count
            else:
                self._deferred.append(incoming)

    async def _pop(self, deadline: float | None) -> _Pending[J] | None:
        """The oldest incoming request; waits for one until ``deadline`` (loop time; None: forever)."""
        loop = asyncio.get_running_loop()
        while not self._incoming:
            self._arrived.clear()
            if deadline is None:
                await self._arrived.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self._incoming.popleft()

    def _fits(self, pending: _Pending[J], key: Hashable, images: int) -> bool:
        job = pending.job
        return job.mergeable and job.batch_key() == key and images + job.image_count <= self.max_batch

    def _record(self, size: int) -> None:
        s = self.stats
        s.batches += 1
        s.requests += size
        s.largest_batch = max(s.largest_batch, size)
        if size > 1:
            s.merged_batches += 1
            s.merged_requests += size
