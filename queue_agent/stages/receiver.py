"""Stage 1: the receiver. THE place where messages are received from SQS.

It long-polls only while a slot is free, so the agent never holds more than ``PREFETCH`` messages
beyond the ``RUNTIME_INFLIGHT`` ones at the runtime (small on purpose: a message held here is one KEDA cannot give to
another pod). Each received message gets a visibility lease at once, then is prepared (status and
idempotency checks, input downloads) and handed to the runner as ``Ready(job, task)``, or straight to
the finisher as ``Ended(job, outcome)`` when it must not run (already done, cancelled, invalid).
"""

from __future__ import annotations

import asyncio
import logging

from contract import ErrorCode
from queue_agent.context import AgentContext
from queue_agent.errors import TransientError
from queue_agent.job import Disposition, Ended, Job, Outcome, Ready
from queue_agent.logs import task_context
from queue_agent.stages.prepare import prepare

log = logging.getLogger(__name__)

# After a failed receive (SQS unreachable), wait this long before polling again.
_RECEIVE_ERROR_PAUSE = 1.0


class Slots:
    """How many messages may be held before the runtime is done with them: PREFETCH plus RUNTIME_INFLIGHT.

    A slot is taken before receiving and given back when the runner is done with the job (or when
    the job turns out not to need the runtime), so with PREFETCH=1 one more message is received
    while the runtime works on its calls, and never more than that.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._available = asyncio.Event()
        self._available.set()

    @property
    def free(self) -> int:
        return self._free

    async def take_all(self) -> int:
        """Wait for at least one free slot, then take every free slot; returns how many (one taker only)."""
        while self._free == 0:
            await self._available.wait()
        taken, self._free = self._free, 0
        self._available.clear()
        return taken

    def give_back(self, count: int = 1) -> None:
        if count <= 0:
            return
        self._free = min(self.size, self._free + count)
        self._available.set()


class Receiver:
    def __init__(
        self,
        ctx: AgentContext,
        slots: Slots,
        to_runner: asyncio.Queue[Ready | None],
        to_finisher: asyncio.Queue[Ended | None],
    ) -> None:
        self.ctx = ctx
        self.slots = slots
        self.to_runner = to_runner
        self.to_finisher = to_finisher
        # Jobs received but not yet handed on; returned to the queue if the agent stops meanwhile.
        self._preparing: dict[asyncio.Task[None], Job] = {}

    async def run(self) -> None:
        ctx = self.ctx
        while True:
            await ctx.health.runtime_up.wait()
            wanted = await self.slots.take_all()
            try:
                deliveries = await ctx.queue.receive(
                    wanted, ctx.settings.receive_wait, visibility_timeout=ctx.leases.visibility_seconds
                )
            except asyncio.CancelledError:
                self.slots.give_back(wanted)
                raise
            except Exception:
                self.slots.give_back(wanted)
                log.exception("receiving from SQS failed; polling again shortly")
                await asyncio.sleep(_RECEIVE_ERROR_PAUSE)
                continue
            self.slots.give_back(wanted - len(deliveries))
            if deliveries:
                ctx.metrics.receive_latency.observe(deliveries[0].receive_wait)
            for delivery in deliveries:
                ctx.leases.hold(delivery.receipt_handle, since=delivery.received_at)
                if delivery.sent_epoch is not None:
                    ctx.metrics.queue_time.observe(max(0.0, delivery.received_epoch - delivery.sent_epoch))
                job = Job.from_delivery(delivery, ctx.settings.runtime_name)
                job = job.traced(ctx.tracer.start(delivery.trace_header, job.task_id))
                task = asyncio.create_task(self._admit(job), name=f"prepare-{job.task_id}")
                self._preparing[task] = job
                task.add_done_callback(self._preparing.pop)
            ctx.metrics.in_flight.set(len(ctx.leases))

    async def _admit(self, job: Job) -> None:
        with task_context(job.task_id):
            log.info(
                "received",
                extra={"receive_count": job.delivery.receive_count, "message_id": job.delivery.message_id},
            )
            try:
                with self.ctx.tracer.span(job.trace, "prepare"):
                    prepared = await prepare(self.ctx, job)
            except Exception:
                # Never drop a held message on the floor: the heartbeat would keep it invisible forever.
                log.exception("preparing the job failed unexpectedly")
                prepared = Outcome(
                    Disposition.RETRY_LATER, error=TransientError("prepare failed", code=ErrorCode.INTERNAL)
                )
            if isinstance(prepared, Outcome):
                self.slots.give_back()
                await self.to_finisher.put(Ended(job, prepared))
                return
            await self.to_runner.put(Ready(job, prepared))

    async def unprepared(self) -> list[Job]:
        """Cancel preparations still running and return their jobs (called at shutdown, after ``run`` ends)."""
        snapshot = list(self._preparing.items())
        for task, _ in snapshot:
            task.cancel()
        await asyncio.gather(*(task for task, _ in snapshot), return_exceptions=True)
        # A task that finished before the cancel reached it has already handed its job on.
        return [job for task, job in snapshot if task.cancelled()]
