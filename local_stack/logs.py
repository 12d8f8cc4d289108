"""One log for the whole local stack: every component's lines, prefixed with its name."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, TextIO

# Colour codes some servers print (moto's werkzeug) would only be noise in a file.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LogSink:
    """Thread-safe line writer to ``stack.log`` (and optionally the console).

    Each component's output is pumped in by its own thread; the lock keeps lines whole.
    The last lines of each component are kept so a failed start can say why.
    """

    def __init__(self, path: Path, *, console: TextIO | None = None, tail_lines: int = 40) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8", errors="replace")
        self._console = console
        self._lock = threading.Lock()
        self._tails: dict[str, deque[str]] = {}
        self._tail_lines = tail_lines
        self._width = 8

    def write(self, component: str, line: str) -> None:
        line = _ANSI.sub("", line.rstrip("\r\n"))
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self._width = max(self._width, len(component))
            text = f"{stamp} {component:<{self._width}} | {line}\n"
            self._tails.setdefault(component, deque(maxlen=self._tail_lines)).append(line)
            if not self._file.closed:
                self._file.write(text)
                self._file.flush()
            if self._console is not None:
                self._console.write(text)
                self._console.flush()

    def tail(self, component: str) -> list[str]:
        with self._lock:
            return list(self._tails.get(component, ()))

    def pump(self, component: str, stream: IO[bytes], drop: re.Pattern[str] | None = None) -> threading.Thread:
        """Copy a child's output into the log on a daemon thread until the stream closes.

        Lines matching ``drop`` are left out (moto's access log would otherwise drown everything else).
        """

        def run() -> None:
            with stream:
                for raw in iter(stream.readline, b""):
                    line = raw.decode("utf-8", errors="replace")
                    if drop is None or not drop.search(line):
                        self.write(component, line)

        thread = threading.Thread(target=run, name=f"log-{component}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            self._file.close()
