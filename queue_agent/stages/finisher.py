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
transition (or the record is terminal but never announced), then record that it was announced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from contract import ErrorInfo, Notification, TaskStatus, notification_status, output_location
from queue_agent.context import AgentContext
from queue_agent.errors import JobError, PermanentError, TransientError
from queue_agent.job import Disposition, Job, Outcome, StoredResult
from queue_agent.logs import task_context

log = logging.getLogger(__name__)


class Finisher:
    def __init__(self, ctx: AgentContext, jobs: asyncio.Queue[Job | None]) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self._limit = asyncio.Semaphore(ctx.settings.finish_concurrency)

    async def run(self) -> None:
        """Finish jobs until the ``None`` sentinel arrives, then wait for those still finishing."""
        pending: set[asyncio.Task[None]] = set()
        while (job := await self.jobs.get()) is not None:
            await self._limit.acquire()
            task = asyncio.create_task(self._guarded(job), name=f"finish-{job.task_id}")
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)

    async def _guarded(self, job: Job) -> None:
        ctx = self.ctx
        try:
            with task_context(job.task_id):
                try:
                    await self.finish(job)
                except Exception:
                    # Nothing is deleted: SQS brings the message back, and the idempotency checks
                    # pick up whatever part of the finish already happened.
                    log.exception("finishing failed; the message will be redelivered")
                    ctx.leases.release(job.receipt_handle)
                    ctx.metrics.jobs.labels(status="finish_failed").inc()
        finally:
            ctx.metrics.in_flight.set(len(ctx.leases))
            self._limit.release()

    async def finish(self, job: Job) -> None:
        ctx = self.ctx
        assert job.outcome is not None
        outcome = job.outcome
        if job.running_write is not None:
            # The runner's "running" write must land before ours, or it could overwrite a terminal state.
            await asyncio.gather(job.running_write, return_exceptions=True)
        branch = {
            Disposition.COMPLETED: self._completed,
            Disposition.FAILED: self._failed,
            Disposition.CANCELLED: self._cancelled,
            Disposition.ALREADY_DONE: self._already_done,
            Disposition.RETRY_LATER: self._retry_later,
            Disposition.RETURN: self._return,
        }[outcome.disposition]
        ended = await branch(job, outcome)
        ctx.metrics.jobs.labels(status=ended.value).inc()
        log.info("finished", extra={"disposition": ended.value, "timings": job.timings()})
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
        job.marks.upload_start = time.monotonic()
        with self.ctx.tracer.span(job.trace, "s3", operation="upload"):
            stored = await self.ctx.results.write(job.message, result)
        job.marks.upload_end = time.monotonic()
        await self._settle(job, TaskStatus.COMPLETED, stored=stored)
        await self._delete(job)
        return Disposition.COMPLETED

    async def _failed(self, job: Job, outcome: Outcome) -> Disposition:
        await self._settle(job, TaskStatus.FAILED, error=outcome.error)
        await self._delete(job)
        return Disposition.FAILED

    async def _cancelled(self, job: Job, outcome: Outcome) -> Disposition:
        await self._settle(job, TaskStatus.CANCELLED)
        await self._delete(job)
        return Disposition.CANCELLED

    async def _already_done(self, job: Job, outcome: Outcome) -> Disposition:
        # Found through .out, the record may still say running (a crash after the upload): complete it.
        # Found through the record, it is terminal already: only a missing announcement is left to do.
        target = TaskStatus.COMPLETED if outcome.stored is not None else None
        await self._settle(job, target, stored=outcome.stored)
        await self._delete(job)
        return Disposition.ALREADY_DONE

    async def _retry_later(self, job: Job, outcome: Outcome) -> Disposition:
        assert outcome.error is not None
        if not self._last_delivery(job):
            log.warning("giving the message back to SQS for a later retry", extra={"error": str(outcome.error)})
            await self._hand_back(job, self.ctx.settings.retry_visibility)
            return Disposition.RETRY_LATER
        count = job.delivery.receive_count
        error = JobError(f"gave up after {count} deliveries: {outcome.error}", code=outcome.error.code)
        await self._settle(job, TaskStatus.FAILED, error=error)
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
        target: TaskStatus | None,
        *,
        stored: StoredResult | None = None,
        error: JobError | None = None,
    ) -> None:
        """Move the status to ``target`` and announce it, at most once per terminal state."""
        ctx = self.ctx
        task_id = job.task_id
        # A message that broke the contract names a task id we cannot trust: never write its record.
        if target is not None and job.message is not None:
            with ctx.tracer.span(job.trace, "dynamodb", operation="transition"):
                moved = await ctx.store.transition(
                    task_id, target, extra=_record_fields(job, stored, error, ctx.results.bucket)
                )
            if moved:
                await self._announce(job, target, stored, error)
                return
        state = await ctx.store.get(task_id) if job.message is not None else None
        if state is None:
            if target is not None:
                await self._announce(job, target, stored, error)
            return
        if not state.status.terminal or state.notified is not None:
            log.info("terminal state already announced", extra={"status": state.status.value})
            return
        # The record reached a terminal state (maybe not ours: a cancel won the race) but nobody
        # announced it, e.g. an earlier attempt crashed between the status write and the publish.
        recorded = StoredResult(state.image_url, state.output_url) if state.output_url else stored
        recorded_error = JobError(state.error["message"], code=state.error["code"]) if state.error else error
        await self._announce(job, state.status, recorded, recorded_error)

    async def _announce(
        self, job: Job, status: TaskStatus, stored: StoredResult | None, error: JobError | None
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
            timings=job.timings(),
        )
        with ctx.tracer.span(job.trace, "sns", operation="publish"):
            await ctx.notifier.publish(notification)
        if message is not None:
            await ctx.store.mark_notified(task_id=job.task_id, status=status)
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
