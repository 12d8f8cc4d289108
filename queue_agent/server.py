"""The agent's own tiny HTTP server: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/ready``.

Plain asyncio streams: three GET routes do not justify a web framework in the sidecar image.
"""

from __future__ import annotations

import asyncio
import json
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from queue_agent.health import Health
from queue_agent.metrics import Metrics

log = logging.getLogger(__name__)

_MAX_REQUEST_HEAD = 8192


class StatusServer:
    def __init__(self, health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics and health endpoint listening", extra={"host": host, "port": bound})
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def route(self, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            status = 200 if self.health.alive else 503
            return status, "application/json", json.dumps(self.health.status()).encode()
        if path == "/ready":
            status = 200 if self.health.ready and self.health.alive else 503
            return status, "application/json", json.dumps(self.health.status()).encode()
        return 404, "application/json", b'{"error":"not found"}'

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, content_type, body = self.route(path) if method in {"GET", "HEAD"} else (405, "text/plain", b"")
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a probe that hangs up or speaks nonsense gets nothing
        finally:
            writer.close()
