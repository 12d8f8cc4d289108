"""Fetching an ``https://`` input without letting a task reach inside the network (SSRF).

Each hop: check the URL's shape (``contract.check_https_url``), resolve the name ourselves, refuse
if ANY address is not public, then connect to the address we vetted (the TLS handshake still
verifies the certificate for the host name, via SNI). Connecting to the vetted address closes the
gap in which a second DNS answer could point elsewhere (TOCTOU). Redirects are followed by hand so
every hop is vetted the same way. Size and time are bounded; nothing is pooled across fetches, so a
TLS session authenticated for one host is never reused for another.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from contract import ErrorCode, RefError, check_https_url, is_public_address
from queue_agent.errors import PermanentError, TransientError

Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressPolicy = Callable[[str], bool]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class InputRefused(PermanentError):
    code: ErrorCode = ErrorCode.INPUT_REFUSED


@dataclass
class HttpsFetcher:
    max_bytes: int
    timeout: float
    resolve: Resolver = system_resolve
    allow_address: AddressPolicy = is_public_address
    verify: ssl.SSLContext | bool = True
    max_redirects: int = 3

    async def fetch(self, url: str, budget: ByteBudget | None = None) -> bytes:
        """The body at ``url``, each hop vetted; ``budget`` (if any) is charged every byte as it arrives."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(url, budget)
        except TimeoutError:
            raise TransientError(
                f"fetching the input took longer than {self.timeout:g}s", code=ErrorCode.INPUT_TIMEOUT
            ) from None

    async def _follow(self, url: str, budget: ByteBudget | None) -> bytes:
        for _ in range(self.max_redirects + 1):
            host, ip, port = await self._vet(url)
            async with httpx.AsyncClient(verify=self.verify, follow_redirects=False, trust_env=False) as client:
                request = client.build_request(
                    "GET",
                    pinned_url(url, ip),
                    headers={
                        "Host": host if port == 443 else f"{host}:{port}",
                        "Accept": "image/*, */*",
                        # Bytes are counted as they arrive: a compressed body would decode past the cap.
                        "Accept-Encoding": "identity",
                    },
                    extensions={"sni_hostname": host},
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise TransientError(f"could not fetch input from {host}: {type(exc).__name__}") from None
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    _check_status(response.status_code, host)
                    return await self._read_bounded(response, budget)
                finally:
                    await response.aclose()
        raise InputRefused(f"more than {self.max_redirects} redirects")

    async def _vet(self, url: str) -> tuple[str, str, int]:
        try:
            host = check_https_url(url)
        except RefError as exc:
            raise InputRefused(str(exc)) from None
        port = urlsplit(url).port or 443
        try:
            addresses = await self.resolve(host, port)
        except OSError:
            raise InputRefused(f"host {host!r} does not resolve") from None
        if not addresses:
            raise InputRefused(f"host {host!r} does not resolve")
        refused = [a for a in addresses if not self.allow_address(a)]
        if refused:
            raise InputRefused(f"host {host!r} resolves to a non-public address")
        return host, addresses[0], port

    async def _read_bounded(self, response: httpx.Response, budget: ByteBudget | None) -> bytes:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # We asked for identity; an image needs no transfer compression, and decoding would bypass the cap.
            raise InputRefused(f"input came with Content-Encoding {encoding!r}; only identity is accepted")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise InputRefused(f"input is {declared} bytes, over the {self.max_bytes}-byte limit")
        buffer = bytearray()
        # Raw bytes, as they come off the socket: nothing is decoded before it is counted.
        async for chunk in response.aiter_raw():
            if len(buffer) + len(chunk) > self.max_bytes:
                raise InputRefused(f"input is over the {self.max_bytes}-byte limit")
            if budget is not None:
                budget.charge(len(chunk))
            buffer += chunk
        return bytes(buffer)


class ByteBudget:
    """Bytes one task's inputs may take together; ``charge`` refuses the byte that would pass the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise InputRefused(f"the task's inputs are over the {self.limit}-byte total limit (max_total_input_bytes)")


def _check_status(status: int, host: str) -> None:
    if status == 200:
        return
    if status == 429 or status >= 500:
        raise TransientError(f"input host {host} answered {status}")
    raise InputRefused(f"input host {host} answered {status}")


def pinned_url(url: str, ip: str) -> str:
    parts = urlsplit(url)
    literal = f"[{ip}]" if isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address) else ip
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()
