"""Stage 2: the runner. One job on the runtime at a time; the only stage that calls the runtime.

The runtime never waits on AWS: when a call returns and the next job is already prefetched, the
next call is dispatched first, and only then is the finished job handed to the finisher (and its
prefetch slot to the receiver), so their AWS work (request signing and serialisation are CPU work
on this same event loop) cannot delay the runtime's next request. The status write that marks a
job running likewise waits until its runtime request is on the wire; a watcher then polls for
cancellation while it runs. Transient failures are retried in place (``ctx.retry``); the result,
whatever it is, goes on to the finisher as an Outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass

from contract import TaskStatus
from queue_agent.context import AgentContext
from queue_agent.errors import JobCancelled, PermanentError, TransientError
from queue_agent.job import Disposition, Job, Outcome, RuntimeOutput
from queue_agent.logs import task_context
from queue_agent.stages.receiver import Slots

log = logging.getLogger(__name__)

# How long a finished job waits for the next one's request to reach the runtime before it is
# handed to the finisher anyway. Normally a millisecond or two.
_DISPATCH_GRACE_SECONDS = 2.0


@dataclass
class _Watch:
    """What the watcher learned while the job ran."""

    cancelled: bool = False
    superseded: bool = False


class Runner:
    def __init__(
        self,
        ctx: AgentContext,
        slots: Slots,
        jobs: asyncio.Queue[Job | None],
        to_finisher: asyncio.Queue[Job | None],
        abort: asyncio.Event,
    ) -> None:
        self.ctx = ctx
        self.slots = slots
        self.jobs = jobs
        self.to_finisher = to_finisher
        self.abort = abort
        self._last_end: float | None = None
        self._current: asyncio.Task[Outcome] | None = None

    async def run(self) -> None:
        """Run jobs until the ``None`` sentinel arrives."""
        aborter = asyncio.create_task(self._abort_when_asked())
        done: Job | None = None  # ran, not yet handed to the finisher
        try:
            while True:
                if done is not None and self.jobs.empty():
                    await self._hand_over(done)  # nothing to dispatch first
                    done = None
                job = await self.jobs.get()
                if job is None:
                    break
                dispatched = asyncio.Event()
                with task_context(job.task_id):
                    self._current = execution = asyncio.create_task(self._execute(job, dispatched))
                # However the job ends (even aborted before it started), never hold the previous one back.
                execution.add_done_callback(functools.partial(_set_on_done, dispatched))
                if done is not None:
                    # Bounded: a runtime that never takes the request must not hold finished work back.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_DISPATCH_GRACE_SECONDS):
                            await dispatched.wait()
                    await self._hand_over(done)
                    done = None
                await asyncio.wait((execution,))
                self._current = None
                # Cancelled only by an abort: the job never finished, so its message goes back.
                job.outcome = Outcome(Disposition.RETURN) if execution.cancelled() else execution.result()
                done = job
            if done is not None:
                await self._hand_over(done)
        finally:
            if self.abort.is_set():
                await aborter  # let the interrupt reach the runtime
            else:
                aborter.cancel()

    async def _hand_over(self, job: Job) -> None:
        self.slots.give_back()
        await self.to_finisher.put(job)

    async def _abort_when_asked(self) -> None:
        """A second SIGTERM/SIGINT aborts the running job: interrupt the runtime, hand the message back."""
        await self.abort.wait()
        if self._current is not None and not self._current.done():
            log.warning("aborting the running job; its message goes back to the queue")
            self._current.cancel()
            await self.ctx.runtime.interrupt()

    async def _execute(self, job: Job, dispatched: asyncio.Event) -> Outcome:
        ctx = self.ctx
        message = job.message
        assert message is not None
        started = time.monotonic()
        if self._last_end is not None:
            gap = started - self._last_end
            ctx.metrics.runtime_idle.inc(gap)
            ctx.metrics.runtime_idle_gap.observe(gap)
        job.marks.run_start = started
        ctx.metrics.running.set(1)
        watch = _Watch()
        # The "running" write goes out alongside the runtime call; the finisher awaits it before its
        # own status write, so the two writes of one job never race each other.
        job.running_write = asyncio.create_task(self._mark_running(job, dispatched))
        watcher = asyncio.create_task(self._watch(job, job.running_write, watch))
        timeout = asyncio.timeout(ctx.settings.job_timeout)

        async def attempt() -> RuntimeOutput:
            # An interrupted call may look transient; once the task is cancelled there is no retrying it.
            if watch.cancelled or watch.superseded:
                raise JobCancelled
            try:
                assert job.prepared is not None
                return await ctx.runtime.run(job.prepared, dispatched.set)
            except BaseException:
                dispatched.set()  # a failed attempt must not hold the previous job back during backoff
                raise

        try:
            with ctx.tracer.span(job.trace, "runtime", tasktype=str(message.tasktype)):
                async with timeout:
                    output = await ctx.retry.run(attempt, "runtime", ctx.metrics.retries.inc)
            outcome = Outcome(Disposition.COMPLETED, output=output)
        except JobCancelled:
            outcome = Outcome(Disposition.CANCELLED)
        except TimeoutError:
            if not timeout.expired():
                raise
            await ctx.runtime.interrupt()
            error = PermanentError(f"job ran longer than {ctx.settings.job_timeout:g}s", code="timeout")
            outcome = Outcome(Disposition.FAILED, error=error)
        except PermanentError as exc:
            outcome = Outcome(Disposition.FAILED, error=exc)
        except TransientError as exc:
            outcome = Outcome(Disposition.RETRY_LATER, error=exc)
        except Exception as exc:
            # A bug of ours or an adapter surprise: let SQS try again; the DLQ bounds the damage.
            log.exception("runtime call failed unexpectedly")
            outcome = Outcome(Disposition.RETRY_LATER, error=TransientError(type(exc).__name__, code="internal"))
        finally:
            job.marks.run_end = self._last_end = time.monotonic()
            ctx.metrics.running.set(0)
            watcher.cancel()
            job.prepared = None  # the body is in the runtime now; do not keep it until the upload ends
        ctx.metrics.job_duration.labels(tasktype=str(message.tasktype)).observe(job.marks.run_end - started)
        if watch.cancelled:
            return Outcome(Disposition.CANCELLED)
        if watch.superseded:
            return Outcome(Disposition.ALREADY_DONE)
        return outcome

    async def _mark_running(self, job: Job, dispatched: asyncio.Event) -> bool:
        """Conditionally move the record to running; False when it had already moved on without us."""
        await dispatched.wait()
        assert job.message is not None
        log.info("running", extra={"tasktype": str(job.message.tasktype)})
        try:
            with self.ctx.tracer.span(job.trace, "dynamodb", operation="running"):
                return await self.ctx.store.transition(job.task_id, TaskStatus.RUNNING, count_attempt=True)
        except Exception:
            log.warning("could not mark the task running", exc_info=True)
            return True

    async def _watch(self, job: Job, running_write: asyncio.Task[bool], watch: _Watch) -> None:
        """Poll for a cancel request (or another delivery finishing the task) until the runtime call ends."""
        ctx = self.ctx
        task_id = job.task_id
        moved = await asyncio.shield(running_write)
        # A refused transition means the record moved on without us (cancelled, or finished by
        # another delivery): look at it at once instead of after the first poll interval.
        look_now = not moved
        while True:
            if not look_now:
                await asyncio.sleep(ctx.settings.cancel_poll_interval)
            look_now = False
            try:
                state = await ctx.store.get(task_id)
            except Exception:
                log.warning("could not read the task's status", exc_info=True)
                continue
            if state is None:
                continue
            if state.status is TaskStatus.CANCELLED or state.cancel_requested:
                log.info("cancel requested; interrupting the runtime")
                watch.cancelled = True
            elif state.status.terminal:
                log.warning("another delivery already finished this task; interrupting", extra={"status": state.status})
                watch.superseded = True
            else:
                continue
            await ctx.runtime.interrupt()
            return


def _set_on_done(event: asyncio.Event, _: asyncio.Task[Outcome]) -> None:
    event.set()
