"""A one-line progress display for ``sdq wait``: a moving bar on a terminal, plain lines otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

_WIDTH = 24


@dataclass
class Progress:
    stream: TextIO
    task_id: str
    _last_status: str | None = None
    _ticks: int = 0
    _drawn: bool = False

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, record: dict[str, Any], elapsed: float) -> None:
        status = str(record.get("status", "?"))
        if not self.interactive:
            # Logs and pipes get one line per change, not a stream of carriage returns.
            if status != self._last_status:
                self.stream.write(f"{self.task_id}: {status} ({elapsed:.1f}s)\n")
                self.stream.flush()
            self._last_status = status
            return
        self._ticks += 1
        self.stream.write(f"\r{self.bar(status, self._ticks)} {status:<9} {elapsed:6.1f}s {self.task_id}")
        self.stream.flush()
        self._drawn = True
        self._last_status = status

    @staticmethod
    def bar(status: str, tick: int) -> str:
        """Queued: an empty bar; running: a block bouncing (no percentage is known); terminal: full."""
        if status in {"completed", "failed", "cancelled"}:
            return "[" + "#" * _WIDTH + "]"
        if status != "running":
            return "[" + "." * _WIDTH + "]"
        span = _WIDTH - 4
        pos = tick % (2 * span)
        pos = pos if pos < span else 2 * span - pos
        return "[" + "." * pos + "####" + "." * (span - pos) + "]"

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
