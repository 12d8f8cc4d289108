"""Start and stop a moto server on loopback: the AWS stand-in for tests and ``make demo``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from local_stack.ports import free_port

# Credentials moto accepts; never real ones, so a misconfigured client cannot reach AWS with them.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class MotoServer:
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for a process whose AWS SDK clients should talk to this server."""
        return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self, timeout: float = 30.0) -> MotoServer:
        if not self.port:
            self.port = free_port(self.host)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # moto reflects any Origin in CORS headers by default: a web page could then drive the local AWS.
        env = {**os.environ, **FAKE_AWS_ENV, "MOTO_DISABLE_GLOBAL_CORS": "true"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"moto server did not answer on {self.endpoint} within {timeout}s")

    def reset(self) -> None:
        """Drop every resource (between tests sharing one server)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - loopback
            pass

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
