"""The visibility heartbeat: every message the agent holds (prefetched, running or finishing) stays
invisible to other consumers until the agent lets go of it.

Messages are received with visibility ``extension``; every ``interval`` the heartbeat pushes the
visibility of each held message that has not been extended during the last interval back to
``extension``. With the default interval (a third of the extension) one missed beat is harmless. A
crashed agent stops beating, so its messages reappear within ``extension`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from queue_agent.sqs import TaskQueue

log = logging.getLogger(__name__)


@dataclass
class Leases:
    queue: TaskQueue
    extension: float
    interval: float
    # receipt handle -> monotonic time at which its visibility runs out
    _deadlines: dict[str, float] = field(default_factory=dict)
    beats: int = 0

    @property
    def visibility_seconds(self) -> int:
        return math.ceil(self.extension)

    def hold(self, receipt: str, since: float) -> None:
        """Start tracking a message received (with visibility ``extension``) at monotonic time ``since``."""
        self._deadlines[receipt] = since + self.visibility_seconds

    def release(self, receipt: str) -> None:
        """Stop extending a message (it is being deleted or handed back)."""
        self._deadlines.pop(receipt, None)

    def held(self, receipt: str) -> bool:
        return receipt in self._deadlines

    def __len__(self) -> int:
        return len(self._deadlines)

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:
                # A failed beat must not end the heartbeat: the next one still has a margin to succeed.
                log.exception("visibility heartbeat failed; retrying at the next beat")

    async def beat(self) -> None:
        now = time.monotonic()
        due = [
            r for r, deadline in self._deadlines.items() if deadline - now <= self.visibility_seconds - self.interval
        ]
        if not due:
            return
        seconds = self.visibility_seconds
        lost = await self.queue.extend(due, seconds)
        self.beats += 1
        for receipt in due:
            if receipt in lost:
                if self._deadlines.pop(receipt, None) is not None:
                    log.error("lost a held message: its visibility could not be extended")
            elif receipt in self._deadlines:
                self._deadlines[receipt] = now + seconds
