"""Child processes of the local stack: own process group, output into the shared log, clean stop.

Every child runs in its own session (process group) so that stopping it also stops whatever it
spawned, and so that a Ctrl-C in the terminal reaches only the supervisor, which then stops the
children in a deliberate order. On Linux each child also asks the kernel to SIGTERM it when the
supervisor dies, so even a SIGKILLed supervisor leaves no orphans behind.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from local_stack.logs import LogSink

_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A component did not come up; the message carries the end of its log."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. Best effort: only Linux has prctl.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` answers 2xx. Only ever called with loopback URLs the stack built itself."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback, our own URL
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    sink: LogSink
    cwd: Path | None = None
    drop_lines: re.Pattern[str] | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _last_returncode: int | None = field(default=None, init=False, repr=False)
    _pump: threading.Thread | None = field(default=None, init=False, repr=False)
    _terminated: bool = field(default=False, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else self._last_returncode

    def start(self) -> ManagedProcess:
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.sink.write("stack", f"starting {self.name}: {' '.join(self.argv)}")
        self._proc = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The hook only calls prctl: no locks, no allocation worth worrying about after fork.
            preexec_fn=_die_with_parent,
        )
        assert self._proc.stdout is not None
        self._pump = self.sink.pump(self.name, self._proc.stdout, self.drop_lines)
        return self

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``check`` until it holds; fail fast (with the log tail) if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise StartError(self._failure(f"exited with code {self.returncode} before it was {what}"))
            if check():
                return
            if time.monotonic() > deadline:
                raise StartError(self._failure(f"was not {what} within {timeout:.0f}s"))
            time.sleep(0.1)

    def wait_exit(self, timeout: float) -> None:
        """Wait for a one-shot process to finish; StartError (with its log tail) unless it exits 0."""
        assert self._proc is not None, "not started"
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StartError(self._failure(f"did not finish within {timeout:.0f}s")) from None
        if code != 0:
            raise StartError(self._failure(f"failed with exit code {code}"))

    def wait_http(self, url: str, timeout: float) -> None:
        self.wait_until(lambda: http_ok(url), timeout, f"answering {url}")

    def terminate(self) -> None:
        """Ask the whole process group to stop (SIGTERM, once); :meth:`stop` waits for it.

        Once only: a second SIGTERM means "abort the running job now" to the queue agent.
        """
        if self._proc is not None and self._proc.poll() is None and not self._terminated:
            self._terminated = True
            self._signal_group(self._proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL it if it has not exited by ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        self.terminate()
        try:
            proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            self.sink.write("stack", f"{self.name} ignored SIGTERM for {timeout:.0f}s; killing it")
            self._signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        # Grandchildren that outlived their parent still share its group id.
        self._signal_group(proc.pid, signal.SIGKILL)
        self.sink.write("stack", f"{self.name} stopped (exit code {proc.returncode})")
        self._proc = None
        self._terminated = False
        self._last_returncode = proc.returncode

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _failure(self, why: str) -> str:
        if self._pump is not None and not self.running:
            self._pump.join(timeout=2)  # let the last lines of a dead process reach the tail
        tail = "\n".join(f"    {line}" for line in self.sink.tail(self.name)[-20:])
        return f"{self.name} {why}; last lines of its output:\n{tail or '    (none)'}\nfull log: {self.sink.path}"


def stop_all(processes: Sequence[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop several processes at once: SIGTERM to all first, so their shutdowns overlap."""
    for proc in processes:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in processes:
        proc.stop(timeout=deadline - time.monotonic())
