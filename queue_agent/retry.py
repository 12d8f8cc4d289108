"""In-process retries of transient failures: the single place where a job step is tried again.

Exponential backoff with full jitter, so that pods recovering from the same runtime hiccup do not
retry in lockstep. When the retries are spent the TransientError propagates and the finisher leaves
the message to SQS redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from queue_agent.errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff: float
    backoff_max: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        ceiling = min(self.backoff_max, self.backoff * (2**attempt))
        return (rng or random).uniform(ceiling / 2, ceiling)

    async def run(self, step: Callable[[], Awaitable[T]], what: str, on_retry: Callable[[], object] | None = None) -> T:
        attempt = 0
        while True:
            try:
                return await step()
            except TransientError as exc:
                if attempt >= self.retries:
                    raise
                # Never sooner than the failing party asked for (an HTTP Retry-After).
                delay = max(self.delay(attempt), exc.retry_after or 0.0)
                log.warning(
                    "transient failure, retrying",
                    extra={"step": what, "attempt": attempt + 1, "retry_in": round(delay, 3), "error": str(exc)},
                )
                if on_retry is not None:
                    on_retry()
                attempt += 1
                await asyncio.sleep(delay)
