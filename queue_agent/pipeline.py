"""The pipeline: receiver -> runner -> finisher, connected by bounded queues, plus the heartbeat.

    receiver (stages/receiver.py)   long-poll SQS, lease, prepare     -> runner, or finisher if no run is needed
    runner   (stages/runner.py)     RUNTIME_INFLIGHT calls at the runtime -> finisher
    finisher (stages/finisher.py)   upload, status, notify, delete    (several jobs at once)
    heartbeat (leases.py)           keeps every held message invisible

Flow is one way: the receiver hands the runner ``Ready(job, task)`` and the finisher ``Ended(job,
outcome)``; the runner hands the finisher ``Ended(job, outcome)``. A Job is immutable; no stage
writes into what another stage holds.

Shutdown (SIGTERM): stop receiving, hand prefetched messages back (visibility 0), let the calls
already at the runtime finish, let the finisher drain, stop the heartbeat. A second signal aborts the
calls at the runtime (their messages are handed back too). When a stage crashes, the calls at the
runtime are stopped and handed back, and the finisher still drains what it holds, within
``CRASH_DRAIN_SECONDS``; the agent then exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from queue_agent import health as health_mod
from queue_agent.context import AgentContext
from queue_agent.job import Ended, Job, Ready
from queue_agent.stages.finisher import Finisher
from queue_agent.stages.receiver import Receiver, Slots
from queue_agent.stages.runner import Runner

log = logging.getLogger(__name__)

# After a stage crashed: how long the finisher may take to drain what it holds before the agent exits.
CRASH_DRAIN_SECONDS = 30.0


class Pipeline:
    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        prefetch, inflight = ctx.settings.prefetch, ctx.settings.runtime_inflight
        self.slots = Slots(prefetch + inflight)
        self.to_runner: asyncio.Queue[Ready | None] = asyncio.Queue(maxsize=prefetch + inflight + 1)
        self.to_finisher: asyncio.Queue[Ended | None] = asyncio.Queue(maxsize=2 * ctx.settings.finish_concurrency)
        self.receiver = Receiver(ctx, self.slots, self.to_runner, self.to_finisher)
        self.abort = asyncio.Event()
        self.runner = Runner(ctx, self.slots, self.to_runner, self.to_finisher, self.abort)
        self.finisher = Finisher(ctx, self.to_finisher)
        self._reported: set[str] = set()

    async def run(self, stop: asyncio.Event, abort: asyncio.Event) -> int:
        """Run until ``stop`` is set (exit 0 after draining) or a stage crashes (exit 1)."""
        ctx = self.ctx
        background = [
            asyncio.create_task(ctx.leases.run(), name="heartbeat"),
            asyncio.create_task(
                health_mod.monitor(ctx.health, ctx.runtime, ctx.settings.health_interval, ctx.metrics),
                name="health",
            ),
            asyncio.create_task(self._forward(abort), name="abort"),
        ]
        stages = {
            asyncio.create_task(self.receiver.run(), name="receiver"): "receiver",
            asyncio.create_task(self.runner.run(), name="runner"): "runner",
            asyncio.create_task(self.finisher.run(), name="finisher"): "finisher",
        }
        receiver_task, runner_task, finisher_task = stages
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, *stages}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        log.info("stopping: no more receives; handing prefetched messages back")
        receiver_task.cancel()
        await asyncio.gather(receiver_task, return_exceptions=True)
        await self._hand_back(await self.receiver.unprepared() + self._drain_runner_queue())
        if not self._crashed(stages):
            # The calls at the runtime finish; then the finisher drains.
            await self.to_runner.put(None)
            await asyncio.wait({runner_task, finisher_task}, return_when=asyncio.FIRST_COMPLETED)
            if not self._crashed(stages):
                await self.to_finisher.put(None)
                await asyncio.wait({finisher_task})
        crashed = self._crashed(stages)
        if crashed:
            await self._after_crash(runner_task, finisher_task)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("stopped", extra={"held_messages": len(ctx.leases)})
        return 1 if crashed else 0

    def _crashed(self, stages: dict[asyncio.Task[None], str]) -> list[str]:
        """Names of the stages that ended with an error (each reported once, and /healthz told)."""
        crashed = []
        for task, name in stages.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                crashed.append(name)
                if name not in self._reported:
                    self._reported.add(name)
                    log.error("pipeline stage crashed", exc_info=task.exception(), extra={"stage": name})
                    self.ctx.health.mark_broken(f"{name} crashed")
        return crashed

    async def _after_crash(self, runner_task: asyncio.Task[None], finisher_task: asyncio.Task[None]) -> None:
        """A stage crashed: stop the calls at the runtime (their messages go back) and let the
        finisher drain what it holds, all within ``CRASH_DRAIN_SECONDS``; its settles are shielded."""
        try:
            async with asyncio.timeout(CRASH_DRAIN_SECONDS):
                if not finisher_task.done():
                    await self.runner.abandon()
                    runner_task.cancel()
                    await asyncio.gather(runner_task, return_exceptions=True)
                    await self.to_finisher.put(None)
                    await asyncio.gather(finisher_task, return_exceptions=True)
        except TimeoutError:
            log.error("the finisher did not drain in time; SQS brings back what it still held")
        for task in (runner_task, finisher_task):
            task.cancel()
        self.abort.set()
        await asyncio.gather(runner_task, finisher_task, return_exceptions=True)
        # Abandon what is left: whatever is unsettled comes back from SQS when its visibility ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CRASH_DRAIN_SECONDS):
                await self.finisher.settling()

    async def _forward(self, abort: asyncio.Event) -> None:
        await abort.wait()
        self.abort.set()

    def _drain_runner_queue(self) -> list[Job]:
        jobs: list[Job] = []
        while True:
            try:
                ready = self.to_runner.get_nowait()
            except asyncio.QueueEmpty:
                return jobs
            if ready is not None:
                jobs.append(ready.job)

    async def _hand_back(self, jobs: list[Job]) -> None:
        """Make never-started messages visible again now, so another pod takes them without waiting."""

        async def one(job: Job) -> None:
            self.ctx.leases.release(job.receipt_handle)
            try:
                await self.ctx.queue.set_visibility(job.receipt_handle, 0)
            except Exception:
                log.warning("could not hand a message back; it returns when its visibility ends", exc_info=True)
            self.ctx.tracer.finish(job.trace, "returned")

        if jobs:
            log.info("handing messages back to the queue", extra={"count": len(jobs)})
        await asyncio.gather(*(one(job) for job in jobs))
