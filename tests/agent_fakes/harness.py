"""Running the real agent for tests: in this process (``running_agent``) or as ``python -m queue_agent``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack.ports import free_port
from queue_agent.agent import Overrides, run_agent
from queue_agent.context import AgentContext
from queue_agent.settings import load_settings
from tests.agent_fakes.aws_world import wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AgentHandle:
    ctx: AgentContext
    stop: asyncio.Event
    abort: asyncio.Event
    task: asyncio.Task[int]


@contextlib.asynccontextmanager
async def running_agent(
    env: Mapping[str, str], overrides: Overrides | None = None, *, expect_exit: int | None = 0
) -> AsyncIterator[AgentHandle]:
    """Run the agent in the current event loop; stop it (and check its exit code) on leaving the block."""
    settings = load_settings(env)
    stop, abort = asyncio.Event(), asyncio.Event()
    ready: asyncio.Future[AgentContext] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_agent(settings, stop, abort, overrides, on_ready=ready.set_result))
    started: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(started, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        raise AssertionError(f"agent exited during start with {task.result()}")
    if ready not in done:
        task.cancel()
        raise AssertionError("agent did not become ready within 30 s")
    handle = AgentHandle(ready.result(), stop, abort, task)
    try:
        yield handle
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 60)
        if expect_exit is not None:
            assert code == expect_exit, f"agent exited with {code}"


@dataclass
class AgentProcess:
    """``python -m queue_agent`` as a child process, with its own health port and a log file."""

    env: Mapping[str, str]
    log_path: Path
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> AgentProcess:
        self.metrics_port = self.metrics_port or free_port()
        env = {
            **os.environ,
            **self.env,
            "METRICS_PORT": str(self.metrics_port),
            "METRICS_HOST": "127.0.0.1",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT),
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "queue_agent"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def probe(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_ready(self, timeout: float = 30.0) -> AgentProcess:
        deadline = time.monotonic() + timeout
        while self.probe("/ready") != 200:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"agent not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def abort(self, drain_timeout: float, exit_timeout: float) -> None:
        """The operator's two signals: SIGTERM, then SIGINT once the agent says it is draining; it must exit 0."""
        self.signal(signal.SIGTERM)
        wait_until(lambda: "draining" in self.log_tail(), drain_timeout, what="drain started")
        self.signal(signal.SIGINT)
        assert self.wait(exit_timeout) == 0, self.log_tail()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
