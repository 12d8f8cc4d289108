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

    async def fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(url)
        except TimeoutError:
            raise TransientError(
                f"fetching the input took longer than {self.timeout:g}s", code=ErrorCode.INPUT_TIMEOUT
            ) from None

    async def _follow(self, url: str) -> bytes:
        for _ in range(self.max_redirects + 1):
            host, ip, port = await self._vet(url)
            async with httpx.AsyncClient(verify=self.verify, follow_redirects=False, trust_env=False) as client:
                request = client.build_request(
                    "GET",
                    _pinned_url(url, ip),
                    headers={"Host": host if port == 443 else f"{host}:{port}", "Accept": "image/*, */*"},
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
                    return await self._read_bounded(response)
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

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise InputRefused(f"input is {declared} bytes, over the {self.max_bytes}-byte limit")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise InputRefused(f"input is over the {self.max_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)


def _check_status(status: int, host: str) -> None:
    if status == 200:
        return
    if status == 429 or status >= 500:
        raise TransientError(f"input host {host} answered {status}")
    raise InputRefused(f"input host {host} answered {status}")


def _pinned_url(url: str, ip: str) -> str:
    parts = urlsplit(url)
    literal = f"[{ip}]" if isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address) else ip
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()
