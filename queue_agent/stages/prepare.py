"""Deciding, before the runtime sees a message, whether it should run at all.

Runs in the receiver stage, while the runtime is busy with the previous job, so none of these AWS
round trips (status read, ``.out`` lookup, input downloads) ever sits between two runtime calls.
"""

from __future__ import annotations

import logging

from contract import ErrorCode, TaskStatus
from queue_agent.aws import classify
from queue_agent.context import AgentContext
from queue_agent.errors import PermanentError, TransientError
from queue_agent.job import Disposition, Job, Outcome, PreparedTask

log = logging.getLogger(__name__)


async def prepare(ctx: AgentContext, job: Job) -> PreparedTask | Outcome:
    """A PreparedTask: run it. An Outcome: finish it without running."""
    if job.contract_error is not None:
        return Outcome(
            Disposition.FAILED, error=PermanentError(str(job.contract_error), code=ErrorCode.INVALID_MESSAGE)
        )
    message = job.message
    assert message is not None
    if message.runtime != ctx.settings.runtime_name:
        # A subscription filter is wrong somewhere; say so loudly instead of running the wrong model.
        wrong = f"task is for runtime {message.runtime!r}, this queue serves {ctx.settings.runtime_name!r}"
        return Outcome(Disposition.FAILED, error=PermanentError(wrong, code=ErrorCode.WRONG_RUNTIME))
    try:
        decided = await _earlier_outcome(ctx, job)
        if isinstance(decided, Outcome):
            return decided
        if decided is TaskStatus.RUNNING and message.expires_at is not None:
            # An earlier delivery started it (then died): a started task is never expired, it finishes.
            message = message.model_copy(update={"expires_at": None})
        elif message.expired():
            log.info("task did not start within its ttl_seconds; it will not run")
            return Outcome(Disposition.EXPIRED)
        inputs = await ctx.retry.run(lambda: ctx.inputs.resolve(message), "inputs", ctx.metrics.retries.inc)
        return await ctx.retry.run(
            lambda: ctx.runtime.prepare(message, inputs), "runtime prepare", ctx.metrics.retries.inc
        )
    except PermanentError as exc:
        return Outcome(Disposition.FAILED, error=exc)
    except TransientError as exc:
        return Outcome(Disposition.RETRY_LATER, error=exc)
    except Exception as exc:
        # Status or S3 unavailable (or misconfigured): not the task's fault, so let SQS bring it back.
        error = classify(exc, "preparing the job")
        log.warning("preparing the job failed", extra={"error": str(error)}, exc_info=True)
        return Outcome(Disposition.RETRY_LATER, error=TransientError(str(error), code=error.code))


async def _earlier_outcome(ctx: AgentContext, job: Job) -> Outcome | TaskStatus | None:
    """What an earlier delivery (or a cancel) already decided for this task, if anything; else the record's
    status (None: no record yet)."""
    message = job.message
    assert message is not None
    with ctx.tracer.span(job.trace, "dynamodb", operation="get"):
        state = await ctx.store.get(message.id)
    if state is None:
        with ctx.tracer.span(job.trace, "dynamodb", operation="ensure"):
            await ctx.store.ensure(message)
    elif state.status is TaskStatus.CANCELLED or (state.cancel_requested and not state.status.terminal):
        log.info("task was cancelled; skipping it")
        return Outcome(Disposition.CANCELLED)
    elif state.status.terminal:
        log.info("task already finished; announcing and deleting", extra={"status": state.status.value})
        return Outcome(Disposition.ALREADY_DONE)
    with ctx.tracer.span(job.trace, "s3", operation="find"):
        stored = await ctx.results.find(message)
    if stored is not None:
        log.info("task result already stored by an earlier delivery; not running it again")
        return Outcome(Disposition.ALREADY_DONE, stored=stored)
    return state.status if state is not None else None
