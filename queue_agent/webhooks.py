"""Per-task webhooks: a signed POST of the task's notification body, off the GPU's path.

Deliveries run as background tasks: the finisher (or the runner, for ``running``) schedules one and goes on.
Each is retried with exponential backoff on a non-2xx answer, a timeout or a refused connection, at most
``WEBHOOK_ATTEMPTS`` times, and its progress is written to the status record (``webhook: {attempts,
last_status, delivered}``). The target URL is vetted again here, with its DNS answers: only public addresses
are called (loopback too where the local stack allows it), no redirect is followed. Every attempt of one
event carries the same ``webhook-id``, so receivers can deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from contract import RefError, WebhookRecord, WebhookTarget, is_public_address, sign, vet_webhook_url
from queue_agent.fetch import Resolver, pinned_url, system_resolve

log = logging.getLogger(__name__)

RecordWriter = Callable[[str, WebhookRecord], Awaitable[None]]


def send(sender: WebhookSender | None, task_id: str, event: str, target: WebhookTarget, body: str) -> None:
    """Schedule a task's webhook for ``event`` (never waits for it)."""
    if sender is None:
        log.warning("the task asks for a webhook but this agent has no webhook secret (WEBHOOK_SECRET[_ARN])")
        return
    sender.send(task_id, event, target, body)


class WebhookRefused(Exception):
    """The target may not be called (scheme, host or one of its addresses)."""


@dataclass
class WebhookSender:
    secret: str
    record: RecordWriter
    attempts: int = 5
    timeout: float = 10.0
    backoff: float = 1.0
    allow_loopback: bool = False
    resolve: Resolver = system_resolve
    _pending: set[asyncio.Task[WebhookRecord]] = field(default_factory=set)

    def send(self, task_id: str, event: str, target: WebhookTarget, body: str) -> None:
        """Schedule the deliveries of one event; returns at once."""
        if not target.wants(event):
            return
        task = asyncio.create_task(self.deliver(task_id, event, target.url, body), name=f"webhook-{task_id}-{event}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, seconds: float) -> None:
        """At shutdown: let the deliveries in progress finish, for at most ``seconds``."""
        if not self._pending:
            return
        _, pending = await asyncio.wait(set(self._pending), timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("webhook deliveries abandoned at shutdown", extra={"count": len(pending)})

    async def deliver(self, task_id: str, event: str, url: str, body: str) -> WebhookRecord:
        record = WebhookRecord()
        message_id = f"{task_id}.{event}"
        for attempt in range(1, self.attempts + 1):
            status: int | None = None
            try:
                status = await self._post(url, message_id, body)
            except WebhookRefused as exc:
                log.warning("webhook target refused", extra={"reason": str(exc)})
                record = WebhookRecord(attempts=attempt, last_status=None)
                await self._write(task_id, record)
                return record
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                log.info("webhook attempt failed", extra={"attempt": attempt, "error": type(exc).__name__})
            record = WebhookRecord(attempts=attempt, last_status=status, delivered=status is not None and status < 300)
            await self._write(task_id, record)
            if record.delivered:
                log.info("webhook delivered", extra={"event": event, "attempts": attempt})
                return record
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("webhook gave up", extra={"event": event, "attempts": self.attempts, "status": record.last_status})
        return record

    async def _write(self, task_id: str, record: WebhookRecord) -> None:
        try:
            await self.record(task_id, record)
        except Exception:
            log.warning("could not record the webhook delivery", exc_info=True)

    async def _post(self, url: str, message_id: str, body: str) -> int:
        target, host = await self._vet(url)
        headers = {"content-type": "application/json", **sign(self.secret, message_id, body)}
        extensions = {}
        if target != url:
            port = urlsplit(url).port
            headers["host"] = host if port is None else f"{host}:{port}"
            extensions["sni_hostname"] = host
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=self.timeout) as client:
            request = client.build_request("POST", target, content=body.encode(), headers=headers,
                                           extensions=extensions)
            response = await client.send(request)
            await response.aclose()
            return response.status_code

    async def _vet(self, url: str) -> tuple[str, str]:
        """The URL to call (its host pinned to a vetted address) and the host name."""
        try:
            vet_webhook_url(url, allow_loopback=self.allow_loopback)
        except RefError as exc:
            raise WebhookRefused(str(exc)) from None
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "http":
            return url, host  # loopback, allowed above only where the setting says so
        try:
            addresses = await self.resolve(host, parts.port or 443)
        except OSError:
            raise WebhookRefused(f"host {host!r} does not resolve") from None
        allowed = [a for a in addresses if is_public_address(a) or (self.allow_loopback and _loopback(a))]
        if not addresses or len(allowed) != len(addresses):
            raise WebhookRefused(f"host {host!r} resolves to a non-public address")
        return pinned_url(url, allowed[0]), host


def _loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback
