"""Stage 3: the finisher. THE place where messages are deleted (or handed back to SQS).

Works on up to ``FINISH_CONCURRENCY`` jobs at once, concurrently with the runner's next job. One
branch per Disposition:

- completed: upload outputs, then settle (status + notification), then delete
- failed / cancelled: settle, then delete
- already done (an earlier delivery finished it): settle (announce if still unannounced), delete
- retry later: leave the message to SQS; on its last allowed delivery (``maxReceiveCount``) settle
  as failed first and let SQS move it to the DLQ (never delete it: the DLQ keeps the evidence)
- return (shutdown): make the message visible again at once

Settling = the conditional status transition, then the notification only if this agent made the
transition (or the record is terminal but never announced), then record that it was announced. A
settle is shielded: once started it runs to its end even when the finisher is cancelled (a shutdown
bound ran out), so a status write is never left without its notification by us.

Jobs arrive as ``Ended(job, outcome)``; the finisher never writes into them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace
from typing import Any

from contract import (
    ErrorCode,
    ErrorInfo,
    Notification,
    TaskStatus,
    notification_status,
    output_location,
)
from queue_agent import webhooks
from queue_agent.context import AgentContext
from queue_agent.errors import JobError, PermanentError, TransientError
from queue_agent.job import Disposition, Ended, Job, Outcome, Span, StoredResult
from queue_agent.logs import task_context

log = logging.getLogger(__name__)

# SQS refuses a visibility timeout beyond 12 hours.
_MAX_VISIBILITY_SECONDS = 43_200


class Finisher:
    def __init__(self, ctx: AgentContext, jobs: asyncio.Queue[Ended | None]) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self._limit = asyncio.Semaphore(ctx.settings.finish_concurrency)
        # Settles in progress; they outlive a cancelled finisher (see ``settling``).
        self._settling: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Finish jobs until the ``None`` sentinel arrives, then wait for those still finishing."""
        pending: set[asyncio.Task[None]] = set()
        try:
            while (ended := await self.jobs.get()) is not None:
                await self._limit.acquire()
                task = asyncio.create_task(self._guarded(ended.job, ended.outcome), name=f"finish-{ended.job.task_id}")
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()

    async def settling(self) -> None:
        """Wait for the shielded settles still running (after the finisher itself was cancelled)."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _guarded(self, job: Job, outcome: Outcome) -> None:
        ctx = self.ctx
        try:
            with task_context(job.task_id):
                try:
                    await self.finish(job, outcome)
                except Exception:
                    # Nothing is deleted: SQS brings the message back, and the idempotency checks
                    # pick up whatever part of the finish already happened.
                    log.exception("finishing failed; the message will be redelivered")
                    ctx.leases.release(job.receipt_handle)
                    ctx.metrics.jobs.labels(status="finish_failed").inc()
        finally:
            ctx.metrics.in_flight.set(len(ctx.leases))
            self._limit.release()

    async def finish(self, job: Job, outcome: Outcome) -> None:
        ctx = self.ctx
        branch = {
            Disposition.COMPLETED: self._completed,
            Disposition.FAILED: self._failed,
            Disposition.CANCELLED: self._cancelled,
            Disposition.EXPIRED: self._expired,
            Disposition.ALREADY_DONE: self._already_done,
            Disposition.RETRY_LATER: self._retry_later,
            Disposition.RETURN: self._return,
        }[outcome.disposition]
        ended = await branch(job, outcome)
        ctx.metrics.jobs.labels(status=ended.value).inc()
        log.info("finished", extra={"disposition": ended.value, "timings": job.timings(outcome)})
        ctx.tracer.finish(job.trace, ended.value, str(outcome.error) if outcome.error else None)

    async def _completed(self, job: Job, outcome: Outcome) -> Disposition:
        assert job.message is not None and outcome.output is not None
        try:
            with self.ctx.tracer.span(job.trace, "decode"):
                result = await self.ctx.retry.run(outcome.output.decode, "decode", self.ctx.metrics.retries.inc)
        except PermanentError as exc:
            return await self._failed(job, Outcome(Disposition.FAILED, error=exc))
        except TransientError as exc:
            return await self._retry_later(job, Outcome(Disposition.RETRY_LATER, error=exc))
        upload_start = time.monotonic()
        with self.ctx.tracer.span(job.trace, "s3", operation="upload"):
            stored = await self.ctx.results.write(job.message, result)
        outcome = replace(outcome, upload=Span(upload_start, time.monotonic()))
        await self._settle(job, outcome, TaskStatus.COMPLETED, stored=stored)
        await self._delete(job)
        return Disposition.COMPLETED

    async def _failed(self, job: Job, outcome: Outcome) -> Disposition:
        await self._settle(job, outcome, TaskStatus.FAILED, error=outcome.error)
        await self._delete(job)
        return Disposition.FAILED

    async def _cancelled(self, job: Job, outcome: Outcome) -> Disposition:
        await self._settle(job, outcome, TaskStatus.CANCELLED)
        await self._delete(job)
        return Disposition.CANCELLED

    async def _expired(self, job: Job, outcome: Outcome) -> Disposition:
        error = PermanentError("the task did not start within its ttl_seconds", code=ErrorCode.EXPIRED)
        await self._settle(job, outcome, TaskStatus.EXPIRED, error=error)
        await self._delete(job)
        return Disposition.EXPIRED

    async def _already_done(self, job: Job, outcome: Outcome) -> Disposition:
        # Found through .out, the record may still say running (a crash after the upload): complete it.
        # Found through the record, it is terminal already: only a missing announcement is left to do.
        target = TaskStatus.COMPLETED if outcome.stored is not None else None
        await self._settle(job, outcome, target, stored=outcome.stored)
        await self._delete(job)
        return Disposition.ALREADY_DONE

    async def _retry_later(self, job: Job, outcome: Outcome) -> Disposition:
        assert outcome.error is not None
        if not self._last_delivery(job):
            # Not sooner than the failing party asked for (a runtime's Retry-After).
            asked = outcome.error.retry_after if isinstance(outcome.error, TransientError) else None
            later = min(max(self.ctx.settings.retry_visibility, math.ceil(asked or 0)), _MAX_VISIBILITY_SECONDS)
            log.warning(
                "giving the message back to SQS for a later retry",
                extra={"error": str(outcome.error), "retry_in": later},
            )
            await self._hand_back(job, later)
            return Disposition.RETRY_LATER
        count = job.delivery.receive_count
        error = JobError(f"gave up after {count} deliveries: {outcome.error}", code=outcome.error.code)
        await self._settle(job, outcome, TaskStatus.FAILED, error=error)
        log.error("last delivery failed; the message goes to the dead-letter queue")
        # Not deleted: visible again at once, so that SQS moves it to the DLQ on the next receive.
        await self._hand_back(job, 0)
        return Disposition.FAILED

    async def _return(self, job: Job, outcome: Outcome) -> Disposition:
        await self._hand_back(job, 0)
        return Disposition.RETURN

    async def _delete(self, job: Job) -> None:
        self.ctx.leases.release(job.receipt_handle)
        with self.ctx.tracer.span(job.trace, "sqs", operation="delete"):
            await self.ctx.queue.delete(job.receipt_handle)

    def _last_delivery(self, job: Job) -> bool:
        limit = self.ctx.queue_info.max_receive_count
        return limit is not None and job.delivery.receive_count >= limit

    async def _hand_back(self, job: Job, seconds: int) -> None:
        self.ctx.leases.release(job.receipt_handle)
        await self.ctx.queue.set_visibility(job.receipt_handle, seconds)

    async def _settle(
        self,
        job: Job,
        outcome: Outcome,
        target: TaskStatus | None,
        *,
        stored: StoredResult | None = None,
        error: JobError | None = None,
    ) -> None:
        """Move the status to ``target`` and announce it, at most once per terminal state (shielded)."""
        task = asyncio.create_task(self._settle_now(job, outcome, target, stored, error))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def _settle_now(
        self,
        job: Job,
        outcome: Outcome,
        target: TaskStatus | None,
        stored: StoredResult | None,
        error: JobError | None,
    ) -> None:
        ctx = self.ctx
        task_id = job.task_id
        # A message that broke the contract names a task id we cannot trust: never write its record.
        if target is not None and job.message is not None:
            with ctx.tracer.span(job.trace, "dynamodb", operation="transition"):
                moved = await ctx.store.transition(
                    task_id, target, extra=_record_fields(job, stored, error, ctx.results.bucket)
                )
            if moved:
                await self._announce(job, outcome, target, stored, error)
                return
        state = await ctx.store.get(task_id) if job.message is not None else None
        if state is None:
            if target is not None:
                await self._announce(job, outcome, target, stored, error)
            return
        if not state.status.terminal or state.notified is not None:
            log.info("terminal state already announced", extra={"status": state.status.value})
            return
        # The record reached a terminal state (maybe not ours: a cancel won the race) but nobody
        # announced it, e.g. an earlier attempt crashed between the status write and the publish.
        recorded = StoredResult(state.image_url, state.output_url) if state.output_url else stored
        recorded_error = (
            JobError(state.error["message"], code=ErrorCode.parse(state.error["code"])) if state.error else error
        )
        await self._announce(job, outcome, state.status, recorded, recorded_error)

    async def _announce(
        self, job: Job, outcome: Outcome, status: TaskStatus, stored: StoredResult | None, error: JobError | None
    ) -> None:
        ctx = self.ctx
        message = job.message
        notification = Notification(
            id=job.task_id,
            runtime=ctx.settings.runtime_name,
            status=notification_status(status),
            result=status is TaskStatus.COMPLETED,
            image_url=stored.image_url if stored else [],
            output_url=stored.output_url if stored else None,
            context=message.context if message else job.fallback_context,
            tasktype=str(message.tasktype) if message else None,
            attempts=job.delivery.receive_count,
            error=ErrorInfo(code=error.code, message=error.message)
            if error and status is not TaskStatus.COMPLETED
            else None,
            timings=job.timings(outcome),
        )
        with ctx.tracer.span(job.trace, "sns", operation="publish"):
            await ctx.notifier.publish(notification, prefix=message.prefix if message else "output")
        if message is not None:
            await ctx.store.mark_notified(task_id=job.task_id, status=status)
            if message.webhook is not None:
                webhooks.send(ctx.webhooks, job.task_id, status.value, message.webhook, notification.model_dump_json())
        log.info("announced", extra={"status": status.value})


def _record_fields(job: Job, stored: StoredResult | None, error: JobError | None, bucket: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if stored is not None and job.message is not None:
        fields["image_url"] = stored.image_url
        fields["output_url"] = stored.output_url
        fields["output_location"] = output_location(bucket, job.message.prefix, job.message.id)
    if error is not None:
        fields["error"] = {"code": error.code, "message": error.message}
    return fields
