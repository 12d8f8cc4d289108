"""Whether this process can still do its job: /health fails so that kubelet restarts the container."""

from __future__ import annotations

import threading


class Health:
    """Consecutive failed generations (reset by a success) and sticky device errors (never reset)."""

    def __init__(self, max_consecutive_failures: int) -> None:
        self.max_consecutive_failures = max_consecutive_failures
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.sticky_error: str | None = None

    def success(self) -> None:
        with self._lock:
            self.consecutive_failures = 0

    def failure(self) -> None:
        with self._lock:
            self.consecutive_failures += 1

    def device_lost(self, error: BaseException) -> None:
        with self._lock:
            self.sticky_error = f"{type(error).__name__}: {str(error)[:300]}"

    @property
    def healthy(self) -> bool:
        with self._lock:
            return self.sticky_error is None and self.consecutive_failures < self.max_consecutive_failures

    def reason(self) -> str:
        with self._lock:
            if self.sticky_error is not None:
                return f"the accelerator is in an unrecoverable state ({self.sticky_error}); restart the container"
            return f"{self.consecutive_failures} generations failed in a row"
