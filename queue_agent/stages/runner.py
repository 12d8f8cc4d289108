"""Stage 2: the runner. The only stage that calls the runtime; it keeps ``RUNTIME_INFLIGHT`` calls there.

With K calls in flight the runtime's own queue holds the next request when the current one ends, so
the GPU never waits for an HTTP round trip of ours, and our runtime can merge compatible requests
into one batch. Calls are dispatched one after the other (the next only once the previous request is
on the wire), so they reach the runtime in order: the oldest call in flight is the one running there
(the *head*), the others wait in the runtime's queue. That order decides what an interrupt means:

- cancel (or another delivery finishing the task): the head is interrupted at the runtime; a call
  still queued there is withdrawn (its request is closed; ComfyUI's prompt is taken off its queue);
- ``JOB_TIMEOUT_SECONDS`` counts from the moment a call becomes the head, so waiting in the
  runtime's queue never uses up a job's time; a head that runs too long is interrupted;
- a call caught by an interrupt meant for another job (merged into its batch) is simply retried.

The runtime never waits on AWS: when a call ends and no other call is in flight, the finished job is
handed to the finisher only after the next call is on the wire (bounded), so the finisher's AWS work
(request signing and serialisation are CPU work on this same event loop) cannot delay the runtime's
next request. The status write that marks a job running waits until its request is on the wire, and
is settled before the job leaves this stage; a watcher polls for cancellation while the call runs.
Transient failures are retried in place (``ctx.retry``). Each job leaves as ``Ended(job, outcome)``.

A task that makes the runtime switch models (``Runtime.model_of``) is sent only once no call for
another model is in flight, so a switch never happens under a running or queued job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field, replace

from contract import ErrorCode, TaskStatus
from queue_agent import webhooks
from queue_agent.context import AgentContext
from queue_agent.errors import JobCancelled, PermanentError, RuntimeInterrupted, TransientError
from queue_agent.job import Disposition, Ended, Job, Outcome, PreparedTask, Ready, RuntimeOutput, Span
from queue_agent.logs import task_context
from queue_agent.stages.receiver import Slots

log = logging.getLogger(__name__)

# How long a finished job waits for the next one's request to reach the runtime before it is
# handed to the finisher anyway. Normally a millisecond or two.
_DISPATCH_GRACE_SECONDS = 2.0


@dataclass(eq=False)
class _Call:
    """One job at the runtime, from dispatch until its outcome is known."""

    job: Job
    task: PreparedTask
    dispatched: asyncio.Event = field(default_factory=asyncio.Event)
    at_head: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by the watcher: why the call should stop.
    cancelled: bool = False
    superseded: bool = False
    work: asyncio.Task[RuntimeOutput] | None = None  # the current attempt's runtime call
    outcome: asyncio.Task[Outcome] | None = None  # everything until the outcome is known (an abort cancels it)

    @property
    def stopping(self) -> bool:
        return self.cancelled or self.superseded


class Runner:
    def __init__(
        self,
        ctx: AgentContext,
        slots: Slots,
        jobs: asyncio.Queue[Ready | None],
        to_finisher: asyncio.Queue[Ended | None],
        abort: asyncio.Event,
    ) -> None:
        self.ctx = ctx
        self.slots = slots
        self.jobs = jobs
        self.to_finisher = to_finisher
        self.abort = abort
        self._room = asyncio.Semaphore(ctx.settings.runtime_inflight)
        self._calls: list[_Call] = []  # in dispatch order; the first is at work on the runtime
        self._executions: set[asyncio.Task[None]] = set()
        self._drained = asyncio.Event()  # no call in flight
        self._drained.set()
        self._dispatch_seen = asyncio.Event()  # replaced at every dispatch; set when one happens
        self._loaded_model: str | None = None
        self._last_end: float | None = None
        self._stopped_all = False

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    async def run(self) -> None:
        """Run jobs until the ``None`` sentinel arrives, then let the calls in flight end."""
        aborter = asyncio.create_task(self._abort_when_asked())
        try:
            while True:
                await self._room.acquire()
                ready = await self.jobs.get()
                if ready is None:
                    self._room.release()
                    break
                if ready.task.message.expired():
                    # Checked again just before the runtime would see it: never run past its deadline.
                    self._room.release()
                    self.slots.give_back()
                    await self.to_finisher.put(Ended(ready.job, Outcome(Disposition.EXPIRED)))
                    continue
                await self._wait_for_model(ready.task)
                call = _Call(ready.job, ready.task)
                execution = self._start(call)
                # One request on the wire at a time, so they reach the runtime in dispatch order.
                on_wire = asyncio.create_task(call.dispatched.wait())
                await asyncio.wait(
                    {on_wire, execution}, timeout=_DISPATCH_GRACE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                on_wire.cancel()
            await self.settle()
        finally:
            if self.abort.is_set():
                await aborter  # let the interrupt reach the runtime
            else:
                aborter.cancel()

    async def settle(self) -> None:
        """Wait until every call in flight has ended and been handed to the finisher."""
        while self._executions:
            await asyncio.gather(*self._executions, return_exceptions=True)

    async def abandon(self) -> None:
        """After a crash elsewhere: stop every call (as an abort does) and hand its message back."""
        self.abort.set()
        await self._stop_all()
        await self.settle()

    def _start(self, call: _Call) -> asyncio.Task[None]:
        now = time.monotonic()
        ctx = self.ctx
        # The runtime's idle time before this call: none while other calls are still in flight.
        gap = 0.0 if self._calls or self._last_end is None else now - self._last_end
        if self._last_end is not None or self._calls:
            ctx.metrics.runtime_idle.inc(gap)
            ctx.metrics.runtime_idle_gap.observe(gap)
        self._calls.append(call)
        self._drained.clear()
        if len(self._calls) == 1:
            call.at_head.set()
        ctx.metrics.running.set(len(self._calls))
        with task_context(call.job.task_id):
            call.outcome = asyncio.create_task(self._outcome(call))
            task = asyncio.create_task(self._execute(call, now), name=f"call-{call.job.task_id}")
        self._executions.add(task)
        task.add_done_callback(self._executions.discard)
        return task

    def _end(self, call: _Call) -> None:
        self._calls.remove(call)
        self._last_end = time.monotonic()
        if self._calls:
            self._calls[0].at_head.set()
        else:
            self._drained.set()
        self.ctx.metrics.running.set(len(self._calls))
        self._room.release()

    async def _wait_for_model(self, task: PreparedTask) -> None:
        wanted = self.ctx.runtime.model_of(task)
        if wanted is None or wanted == self._loaded_model:
            return
        if self._calls:
            log.info("waiting for the calls in flight before switching models", extra={"to_model": wanted})
            await self._drained.wait()
        self._loaded_model = wanted

    def _on_dispatch(self, call: _Call) -> None:
        if call.dispatched.is_set():
            return
        call.dispatched.set()
        seen, self._dispatch_seen = self._dispatch_seen, asyncio.Event()
        seen.set()

    async def _execute(self, call: _Call, started: float) -> None:
        """Run one call to its outcome, then hand the job to the finisher (however it ended)."""
        ctx, job = self.ctx, call.job
        running_write = asyncio.create_task(self._mark_running(call))
        watcher = asyncio.create_task(self._watch(call, running_write))
        assert call.outcome is not None
        try:
            await asyncio.wait({call.outcome})
            # Cancelled only by an abort: the job never finished, so its message goes back.
            outcome = Outcome(Disposition.RETURN) if call.outcome.cancelled() else call.outcome.result()
        finally:
            watcher.cancel()
            ended = time.monotonic()
            next_dispatch = self._dispatch_seen
            self._end(call)
        if not call.dispatched.is_set():
            running_write.cancel()
        # The "running" write lands before the finisher's terminal write, never after it.
        await asyncio.gather(running_write, return_exceptions=True)
        message = call.task.message
        ctx.metrics.job_duration.labels(tasktype=str(message.tasktype)).observe(ended - started)
        if outcome.disposition is not Disposition.RETURN:
            outcome = replace(outcome, run=Span(started, ended))
        if not self._calls and not self.jobs.empty():
            # The runtime is idle until the next request lands: let it go out before our AWS work.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DISPATCH_GRACE_SECONDS):
                    await next_dispatch.wait()
        self.slots.give_back()
        await self.to_finisher.put(Ended(job, outcome))

    async def _outcome(self, call: _Call) -> Outcome:
        ctx, job = self.ctx, call.job
        message = call.task.message
        timeout = asyncio.timeout(None)

        async def attempt() -> RuntimeOutput:
            # An interrupted call may look transient; once the task is cancelled there is no retrying it.
            if call.stopping:
                raise JobCancelled
            call.work = asyncio.create_task(ctx.runtime.run(call.task, lambda: self._on_dispatch(call)))
            try:
                await asyncio.wait({call.work})
            finally:
                self._on_dispatch(call)  # a failed attempt must not hold the next call back during backoff
            if call.work.cancelled():
                raise JobCancelled  # withdrawn from the runtime's queue by the watcher
            return call.work.result()

        async def arm() -> None:
            await call.at_head.wait()
            timeout.reschedule(asyncio.get_running_loop().time() + ctx.settings.job_timeout)

        try:
            with ctx.tracer.span(job.trace, "runtime", tasktype=str(message.tasktype)):
                async with timeout:
                    arming = asyncio.create_task(arm())
                    try:
                        output = await ctx.retry.run(attempt, "runtime", ctx.metrics.retries.inc)
                    finally:
                        arming.cancel()
            outcome = Outcome(Disposition.COMPLETED, output=output)
        except JobCancelled:
            outcome = Outcome(Disposition.CANCELLED)
        except TimeoutError:
            if not timeout.expired():
                raise
            await self._interrupt(call)
            error = PermanentError(f"job ran longer than {ctx.settings.job_timeout:g}s", code=ErrorCode.TIMEOUT)
            outcome = Outcome(Disposition.FAILED, error=error)
        except RuntimeInterrupted as exc:
            # Interrupted on our behalf but the watcher had not flagged it yet, or retries ran out.
            outcome = Outcome(Disposition.CANCELLED) if call.stopping else Outcome(Disposition.RETRY_LATER, error=exc)
        except PermanentError as exc:
            outcome = Outcome(Disposition.FAILED, error=exc)
        except TransientError as exc:
            outcome = Outcome(Disposition.RETRY_LATER, error=exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug of ours or an adapter surprise: let SQS try again; the DLQ bounds the damage.
            log.exception("runtime call failed unexpectedly")
            outcome = Outcome(
                Disposition.RETRY_LATER, error=TransientError(type(exc).__name__, code=ErrorCode.INTERNAL)
            )
        finally:
            if call.work is not None and not call.work.done():
                call.work.cancel()
                await asyncio.gather(call.work, return_exceptions=True)
        if call.cancelled:
            return Outcome(Disposition.CANCELLED)
        if call.superseded:
            return Outcome(Disposition.ALREADY_DONE)
        return outcome

    async def _interrupt(self, call: _Call) -> None:
        """Stop ``call`` at the runtime: interrupt it when it is running there, withdraw it when queued."""
        if call.at_head.is_set():
            await self.ctx.runtime.interrupt()
        elif call.work is not None:
            call.work.cancel()

    async def _abort_when_asked(self) -> None:
        """A second SIGTERM/SIGINT aborts the calls in flight: interrupt the runtime, hand the messages back."""
        await self.abort.wait()
        await self._stop_all()

    async def _stop_all(self) -> None:
        calls = list(self._calls)
        if not calls or self._stopped_all:
            return
        self._stopped_all = True
        log.warning("aborting the calls in flight; their messages go back to the queue", extra={"count": len(calls)})
        for call in calls:
            if call.outcome is not None:
                call.outcome.cancel()
        await self.ctx.runtime.interrupt()

    async def _mark_running(self, call: _Call) -> bool:
        """Conditionally move the record to running; False when it had already moved on without us."""
        await call.dispatched.wait()
        job = call.job
        log.info("running", extra={"tasktype": str(call.task.message.tasktype)})
        try:
            with self.ctx.tracer.span(job.trace, "dynamodb", operation="running"):
                moved = await self.ctx.store.transition(job.task_id, TaskStatus.RUNNING, count_attempt=True)
            message = call.task.message
            if moved and message.webhook is not None and message.webhook.wants(TaskStatus.RUNNING):
                body = {"id": job.task_id, "runtime": message.runtime, "status": "running",
                        "tasktype": str(message.tasktype), "context": message.context}
                webhooks.send(self.ctx.webhooks, job.task_id, "running", message.webhook, json.dumps(body))
            return moved
        except Exception:
            log.warning("could not mark the task running", exc_info=True)
            return True

    async def _watch(self, call: _Call, running_write: asyncio.Task[bool]) -> None:
        """Poll for a cancel request (or another delivery finishing the task) until the runtime call ends."""
        ctx = self.ctx
        task_id = call.job.task_id
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
                log.info("cancel requested; stopping the call")
                call.cancelled = True
            elif state.status.terminal:
                log.warning("another delivery already finished this task; stopping", extra={"status": state.status})
                call.superseded = True
            else:
                continue
            await self._interrupt(call)
            return
