"""What the worker is doing, readable from the event loop (/progress) and interruptible (/interrupt)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass
class _State:
    job: str = ""
    job_count: int = 0
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    started: float = 0.0
    job_timestamp: str = "0"
    interrupted: bool = False


class Progress:
    """Thread-safe job state. Only the worker thread begins/ends jobs; any thread reads or interrupts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._on_interrupt: Callable[[], None] | None = None
        self.steps_total = 0  # sampling steps run since start (shows when work stopped early)

    def begin(self, job: str, *, job_count: int, steps: int, on_interrupt: Callable[[], None] | None = None) -> None:
        """A batch starts; ``on_interrupt`` stops the request /interrupt applies to (the one shown here)."""
        with self._lock:
            self._on_interrupt = on_interrupt
            # An interrupt only ever applies to the job running when it arrives (as in AUTOMATIC1111).
            self._state = _State(
                job=job,
                job_count=job_count,
                sampling_steps=steps,
                started=time.monotonic(),
                job_timestamp=datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
            )

    def next_call(self, job_no: int, steps: int) -> None:
        with self._lock:
            self._state.job_no = job_no
            self._state.sampling_step = 0
            self._state.sampling_steps = steps

    def step(self, step: int, steps: int | None = None) -> None:
        """Record a finished step."""
        with self._lock:
            self.steps_total += 1
            self._state.sampling_step = step
            if steps:
                self._state.sampling_steps = steps

    def end(self) -> None:
        with self._lock:
            self._state = _State(job_timestamp=self._state.job_timestamp)
            self._on_interrupt = None

    def interrupt(self) -> bool:
        """Stop the running request at its next step (as in AUTOMATIC1111); returns whether one was running."""
        with self._lock:
            if not self._state.job:
                return False
            self._state.interrupted = True
            stop = self._on_interrupt
        if stop is not None:
            stop()
        return True

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._state.job)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            s = self._state
            done = 0.0
            if s.job and s.job_count and s.sampling_steps:
                done = (s.job_no + min(s.sampling_step, s.sampling_steps) / s.sampling_steps) / s.job_count
            elapsed = time.monotonic() - s.started if s.job else 0.0
            eta = elapsed / done - elapsed if done > 0 else 0.0
            return {
                "progress": round(min(done, 1.0), 4),
                "eta_relative": round(max(eta, 0.0), 3),
                "state": {
                    "skipped": False,
                    "interrupted": s.interrupted,
                    "job": s.job,
                    "job_count": s.job_count,
                    "job_timestamp": s.job_timestamp,
                    "job_no": s.job_no,
                    "sampling_step": s.sampling_step,
                    "sampling_steps": s.sampling_steps,
                },
                "current_image": None,
                "textinfo": None,
            }
