"""Serve an ASGI app from a background thread (uvicorn), for fakes the agent reaches over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any, Self

import uvicorn

from local_stack.ports import free_port


class ThreadedServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ThreadedServer:
        self.port = self.port or free_port(self.host)
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"fake-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedFake:
    """A fake whose ASGI ``app`` is served from a thread: ``start()`` and ``stop()``, or a ``with`` block."""

    app: Any
    _server: ThreadedServer | None = None

    def start(self, port: int = 0) -> Self:
        self._server = ThreadedServer(self.app, port=port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the started server."""
        assert self._server is not None
        return self._server.url

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
