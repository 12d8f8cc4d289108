"""Whether the agent is worth keeping alive: the runtime answers, and no pipeline stage has died.

``/healthz`` (liveness) stays 200 while the runtime is still loading: restarting a pod that is
loading a model only makes it load again. It turns 503 when a runtime that was ready stops
answering for ``threshold`` consecutive probes, or when a stage of the pipeline has crashed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from queue_agent.metrics import Metrics
from queue_agent.runtimes.base import Runtime

log = logging.getLogger(__name__)


@dataclass
class Health:
    threshold: int
    ready: bool = False
    failures: int = 0
    broken: str | None = None
    # Set while the runtime answers; the receiver waits on it so a sick pod stops taking work.
    runtime_up: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def alive(self) -> bool:
        return self.broken is None and self.failures < self.threshold

    def mark_ready(self) -> None:
        self.ready = True
        self.failures = 0
        self.runtime_up.set()

    def record_probe(self, ok: bool) -> None:
        if ok:
            if self.failures >= self.threshold:
                log.info("runtime answers again")
            self.failures = 0
            self.runtime_up.set()
            return
        self.failures += 1
        if self.failures == self.threshold:
            log.error("runtime stopped answering; reporting unhealthy", extra={"failures": self.failures})
            self.runtime_up.clear()

    def mark_broken(self, reason: str) -> None:
        self.broken = reason

    def status(self) -> dict[str, object]:
        return {"alive": self.alive, "ready": self.ready, "runtime_failures": self.failures, "broken": self.broken}


async def monitor(health: Health, runtime: Runtime, interval: float, metrics: Metrics) -> None:
    """Probe the runtime every ``interval`` seconds, forever (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(interval)
        ok = await runtime.healthy()
        health.record_probe(ok)
        metrics.runtime_healthy.set(1 if ok else 0)
