"""The pipeline: receiver -> runner -> finisher, connected by bounded queues, plus the heartbeat.

    receiver (stages/receiver.py)   long-poll SQS, lease, prepare     -> runner, or finisher if no run is needed
    runner   (stages/runner.py)     one job on the runtime at a time  -> finisher
    finisher (stages/finisher.py)   upload, status, notify, delete    (several jobs at once)
    heartbeat (leases.py)           keeps every held message invisible

Shutdown (SIGTERM): stop receiving, hand prefetched messages back (visibility 0), let the runner
finish its job, let the finisher drain, stop the heartbeat. A second signal aborts the running job
(its message is handed back too).
"""

from __future__ import annotations

import asyncio
import logging

from queue_agent import health as health_mod
from queue_agent.context import AgentContext
from queue_agent.job import Job
from queue_agent.stages.finisher import Finisher
from queue_agent.stages.receiver import Receiver, Slots
from queue_agent.stages.runner import Runner

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        prefetch = ctx.settings.prefetch
        self.slots = Slots(prefetch + 1)
        self.to_runner: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=prefetch + 2)
        self.to_finisher: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=2 * ctx.settings.finish_concurrency)
        self.receiver = Receiver(ctx, self.slots, self.to_runner, self.to_finisher)
        self.abort = asyncio.Event()
        self.runner = Runner(ctx, self.slots, self.to_runner, self.to_finisher, self.abort)
        self.finisher = Finisher(ctx, self.to_finisher)

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
        crashed = [name for task, name in stages.items() if task.done()]
        for task, name in stages.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("pipeline stage crashed", exc_info=task.exception(), extra={"stage": name})
                ctx.health.mark_broken(f"{name} crashed")
        log.info("stopping: no more receives; handing prefetched messages back")
        receiver_task.cancel()
        await asyncio.gather(receiver_task, return_exceptions=True)
        await self._hand_back(await self.receiver.unprepared() + self._drain_runner_queue())
        if crashed:
            self.abort.set()
            for task in stages:
                task.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
        else:
            await self.to_runner.put(None)
            await runner_task
            await self.to_finisher.put(None)
            await finisher_task
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("stopped", extra={"held_messages": len(ctx.leases)})
        return 1 if crashed else 0

    async def _forward(self, abort: asyncio.Event) -> None:
        await abort.wait()
        self.abort.set()

    def _drain_runner_queue(self) -> list[Job]:
        jobs: list[Job] = []
        while True:
            try:
                job = self.to_runner.get_nowait()
            except asyncio.QueueEmpty:
                return jobs
            if job is not None:
                jobs.append(job)

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
