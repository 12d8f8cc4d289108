"""A local HTTPS server with a throwaway CA, standing in for "a public image host" in fetch tests.

The certificate is issued for a made-up host name; the test resolves that name to 127.0.0.1 and
trusts the CA, so the real TLS handshake (SNI, hostname verification) happens as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contract import is_public_address
from local_stack.ports import free_port
from queue_agent.fetch import HttpsFetcher

# The made-up public image host the fetch tests' certificates name.
IMAGE_HOST = "images.example.com"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certs(directory: Path, hostname: str) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem) for ``hostname``, signed by a fresh CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("agent test CA"))
        .issuer_name(_name("agent test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False  # stream without Content-Length


@dataclass
class TlsServer:
    cert: Path
    key: Path
    routes: dict[str, Reply] = field(default_factory=dict)
    port: int = 0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (path, Host header, SNI)
    headers: list[dict[str, str]] = field(default_factory=list)  # each request's headers, lower-cased names
    in_flight: int = 0
    max_in_flight: int = 0  # the most requests being answered at once
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> TlsServer:
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        sni: dict[int, str | None] = {}

        def remember_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            sni[id(sock)] = name

        context.sni_callback = remember_sni  # type: ignore[assignment]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ssl_object = writer.get_extra_info("ssl_object")
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            lines = head.split("\r\n")
            path = lines[0].split(" ")[1]
            host = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("host:")), "")
            self.requests.append((path, host, sni.get(id(ssl_object))))
            self.headers.append(
                {k.lower().strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            )
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self._answer(path, writer)
            finally:
                self.in_flight -= 1

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", self.port, ssl=context))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True, name="tls-server")
        self._thread.start()
        ready.wait(10)
        return self

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        reply = self.routes.get(path, Reply(404, b"not found"))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        headers = {"Connection": "close", **reply.headers}
        if reply.chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(len(reply.body))
        writer.write(f"HTTP/1.1 {reply.status} X\r\n".encode())
        writer.write("".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n")
        if reply.chunked:
            for start in range(0, len(reply.body), 1024):
                piece = reply.body[start : start + 1024]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(reply.body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:

            async def shutdown() -> None:
                current = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task is not current:
                        task.cancel()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None


def _serve_child(cert: Path, key: Path, routes: dict[str, Reply], conn: Connection) -> None:
    server = TlsServer(cert, key, routes).start()
    conn.send(server.port)
    conn.recv()  # anything: stop
    server.stop()


@contextlib.contextmanager
def tls_server_process(cert: Path, key: Path, routes: dict[str, Reply]) -> Iterator[int]:
    """A TlsServer in a child process (its memory is not the test's); yields its port."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_child, args=(cert, key, routes, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise TimeoutError("the TLS server process did not start")
        yield int(parent.recv())
    finally:
        parent.send(None)
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)


class Resolver:
    """A DNS stand-in: fixed answers per name, and a record of every lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise OSError("NXDOMAIN")
        return self.answers[host]


def local_fetcher(
    certs: tuple[Path, Path, Path], resolver: Resolver, *, max_bytes: int = 1 << 20, timeout: float = 5.0, **kw: Any
) -> HttpsFetcher:
    """An HttpsFetcher that trusts the test CA of ``certs`` and resolves through ``resolver``."""
    ca, _, _ = certs
    return HttpsFetcher(
        max_bytes=max_bytes,
        timeout=timeout,
        resolve=resolver,
        # The local server is the one loopback address allowed; everything else by the contract's rule.
        allow_address=lambda ip: ip == "127.0.0.1" or is_public_address(ip),
        verify=ssl.create_default_context(cafile=str(ca)),
        **kw,
    )
