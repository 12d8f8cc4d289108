"""A local stand-in for API Gateway: real HTTP in, REST proxy events to the Lambda handlers in-process.

    gateway = LocalGateway(api_key="k", handler=task_api.app.handler).start()
    ... POST {gateway.url}/tasks with header x-api-key: k ...
    gateway.stop()

What it does like API Gateway: the API key check (``x-api-key``, 403 otherwise), the REST proxy event
(format 1.0), a 10 MB payload cap, one invocation at a time per function. What it adds for local use:
CORS for a page on another origin, and static files (``static_dir``) for the web page.

``python -m local_stack.gateway --help`` runs it by hand against whatever AWS endpoint the environment names.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import importlib
import json
import logging
import mimetypes
import os
import re
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

from contract import ErrorCode, error_body
from local_stack.gateway_events import GatewayRoute, Handler, HttpRequest, LambdaContext, rest_proxy_event

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# API Gateway refuses payloads over 10 MB before any Lambda runs.
MAX_BODY_BYTES = 10 * 1024 * 1024
CORS_ALLOW_HEADERS = "Content-Type, X-Api-Key, Authorization"
CORS_EXPOSE_HEADERS = "Location"

# Powertools keeps the current event on a class attribute, and Lambda runs one event at a time per
# environment: handler calls from the server's threads are serialised process-wide to match.
_INVOKE_LOCK = threading.Lock()


# The key id API Gateway would pass for a gateway started with one plain key.
DEFAULT_KEY_ID = "local-key"


class LocalGateway:
    def __init__(
        self,
        api_key: str | Mapping[str, str] | None,
        handler: Handler | Mapping[str, Handler] | Sequence[GatewayRoute],
        host: str = "127.0.0.1",
        port: int = 0,
        static_dir: str | Path | Sequence[str | Path] | None = None,
        *,
        stage: str = "local",
        cors_origin: str = "*",
    ) -> None:
        """``api_key``: one key (its id is ``local-key``), a mapping of key value to key id (several tenants,
        each seen by the handlers as ``requestContext.identity.apiKeyId``), or None to turn the check off.
        ``handler``: one handler for every route of the task API, a mapping of function name
        (submit/status/cancel) to handler, or explicit routes."""
        self.api_keys: dict[str, str] | None = (
            None if api_key is None else {api_key: DEFAULT_KEY_ID} if isinstance(api_key, str) else dict(api_key)
        )
        self.routes = _as_routes(handler)
        self.host = host
        self.port = port
        # Several folders are searched in order (the page, then what the stack generates for it).
        folders = [static_dir] if isinstance(static_dir, (str, Path)) else list(static_dir or [])
        self.static_dirs = [Path(folder).resolve() for folder in folders]
        self.stage = stage
        self.cors_origin = cors_origin
        self.function_name = f"local-gateway-{stage}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalGateway:
        gateway = self

        class _Bound(_RequestHandler):
            owner = gateway

        self._server = ThreadingHTTPServer((self.host, self.port), _Bound)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="local-gateway", daemon=True
        )
        self._thread.start()
        log.info("local gateway on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- decisions, called from the request handler -------------------------------------------------------------

    def key_id(self, given: str | None) -> str | None:
        """The id of the key ``given`` (None when it is no key of this gateway; "" when keys are off)."""
        if self.api_keys is None:
            return ""
        if given is None:
            return None
        found = None
        # Every key is compared, in constant time each, so that timing tells nothing about which one matched.
        for value, key_id in self.api_keys.items():
            if hmac.compare_digest(given.encode(), value.encode()):
                found = key_id
        return found

    def find(self, method: str, path: str) -> tuple[GatewayRoute | None, dict[str, str], list[str]]:
        """The route for ``method`` on ``path`` with its path parameters, and the methods the path allows.

        As API Gateway REST APIs do, a trailing slash names the same resource; doubled slashes (the sample's
        scripts join an endpoint ending in ``/`` with ``/v1alpha2/``) count as one."""
        path = re.sub(r"/{2,}", "/", path).rstrip("/") or "/"
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            allowed.append(route.method)
            if route.method == method:
                return route, params, allowed
        return None, {}, allowed

    def static_file(self, path: str) -> Path | None:
        relative = unquote(path).lstrip("/") or "index.html"
        for folder in self.static_dirs:
            candidate = (folder / relative).resolve()
            if candidate.is_dir():
                candidate = candidate / "index.html"
            # resolve() follows symlinks and '..': whatever it names must still be inside the static folder.
            if candidate.is_relative_to(folder) and candidate.is_file():
                return candidate
        return None


class _RequestHandler(BaseHTTPRequestHandler):
    owner: LocalGateway
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    server_version = "LocalGateway"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __getattr__(self, name: str) -> Any:
        # http.server dispatches to do_<METHOD> and answers 501 (an HTML page) when there is none: every
        # method goes through the router instead, so that an unknown one is a JSON 405 or 404 like any other.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Protocol errors caught by http.server itself (bad request line, header overflow): same JSON shape.
        self.close_connection = True
        status = HTTPStatus(code)
        too_large = {HTTPStatus.REQUEST_URI_TOO_LONG, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE}
        wire_code = ErrorCode.REQUEST_TOO_LARGE if status in too_large else ErrorCode.BAD_REQUEST
        self._error(status, wire_code, message or status.phrase)

    def do_OPTIONS(self) -> None:
        # CORS pre-flight: browsers send it without the API key, so it is answered before any check.
        if self._read_body() is None:
            return
        self._send(HTTPStatus.NO_CONTENT, b"", {"Access-Control-Max-Age": "600"})

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (method, path, status); headers, and so the API key, are never logged.
        log.debug("%s - %s", self.address_string(), format % args)

    def _serve(self) -> None:
        # The body is read first, whatever the answer, so that a kept-alive connection stays in step.
        body = self._read_body()
        if body is None:
            return
        path, query = _split_target(self.path)
        route, params, allowed = self.owner.find(self.command, unquote(path))
        if route is None:
            self._not_routed(path, allowed)
            return
        given = self.headers.get("x-api-key")
        key_id = self.owner.key_id(given)
        if key_id is None:
            self._error(HTTPStatus.FORBIDDEN, ErrorCode.FORBIDDEN, "Forbidden")
            return
        request = HttpRequest(
            method=self.command,
            path=path,
            query=query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
        )
        host = self.headers.get("Host") or f"{self.owner.host}:{self.owner.port}"
        event = rest_proxy_event(
            request, route, params, stage=self.owner.stage, domain=host, api_key=given, api_key_id=key_id or None
        )
        self._invoke(route, event)

    def _not_routed(self, path: str, allowed: list[str]) -> None:
        if allowed:
            methods = ", ".join(sorted({*allowed, "OPTIONS"}))
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                ErrorCode.METHOD_NOT_ALLOWED,
                f"use {methods} on this path",
                {"Allow": methods},
            )
            return
        if self.command in {"GET", "HEAD"} and (file := self.owner.static_file(path)) is not None:
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(HTTPStatus.OK, file.read_bytes(), {"Content-Type": content_type, "Cache-Control": "no-cache"})
            return
        self._error(HTTPStatus.NOT_FOUND, ErrorCode.NOT_FOUND, "no such resource")

    def _read_body(self) -> bytes | None:
        """The request body; None when it was refused (an answer is already sent, the connection closes)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, ErrorCode.LENGTH_REQUIRED, "send the body with a Content-Length")
            return None
        raw = self.headers.get("Content-Length") or "0"
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, ErrorCode.BAD_REQUEST, "Content-Length is not a number")
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                ErrorCode.REQUEST_TOO_LARGE,
                f"payloads are limited to {MAX_BODY_BYTES} bytes; pass images as s3:// or https:// references",
            )
            return None
        return self.rfile.read(length) if length else b""

    def _invoke(self, route: GatewayRoute, event: dict[str, Any]) -> None:
        context = LambdaContext(function_name=self.owner.function_name)
        try:
            with _INVOKE_LOCK:
                result = route.handler(event, context)
            status, headers, body = _proxy_response(result)
        except Exception:
            # What API Gateway answers when the integration fails; the details stay in this process's log.
            log.exception("handler for %s %s failed", route.method, route.resource)
            self._error(HTTPStatus.BAD_GATEWAY, ErrorCode.BAD_GATEWAY, "Internal server error")
            return
        self._send(status, b"" if self.command == "HEAD" else body, headers)

    def _error(self, status: HTTPStatus, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        # The contract's error shape, plus API Gateway's own top-level "message" for clients that read it.
        body = {"message": message, **error_body(code, message)}
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        merged = {
            "Access-Control-Allow-Origin": self.owner.cors_origin,
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Expose-Headers": CORS_EXPOSE_HEADERS,
            **headers,
            "Content-Length": str(len(body)),
        }
        if self.close_connection:
            merged["Connection"] = "close"
        for name, value in merged.items():
            self.send_header(name, value)
        # Headers and body in one write: two small writes meet Nagle and delayed ACKs, 40 ms per request.
        # (An HTTP/0.9 request has no header buffer: http.server sends no headers for it.)
        buffer: list[bytes] | None = getattr(self, "_headers_buffer", None)
        if buffer is None:
            buffer = []
            self._headers_buffer = buffer
        else:
            buffer.append(b"\r\n")
        if self.command != "HEAD":
            buffer.append(body)
        self.flush_headers()


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of a request target. An origin-form target is split by hand: ``urlsplit`` would read
    the ``//v1alpha2/`` of a doubled slash as a host name."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path.partition("#")[0], query.partition("#")[0]
    parts = urlsplit(target)
    return parts.path or "/", parts.query


def _proxy_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body from a proxy integration's answer; ValueError when it is malformed."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise ValueError("the handler did not return a proxy response with an integer statusCode")
    headers: dict[str, str] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(str(v) for v in values)
    for name, value in (result.get("headers") or {}).items():
        headers[name] = str(value)
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise ValueError("the handler returned a non-string body")
    if result.get("isBase64Encoded"):
        return result["statusCode"], headers, base64.b64decode(body)
    return result["statusCode"], headers, body.encode("utf-8")


def _as_routes(handler: Handler | Mapping[str, Handler] | Sequence[GatewayRoute]) -> list[GatewayRoute]:
    if isinstance(handler, Sequence):
        return list(handler)
    return task_api_routes(handler)


def task_api_routes(handler: Handler | Mapping[str, Handler] | None = None) -> list[GatewayRoute]:
    """The task API's routes (``task_api.routes.API_ROUTES``), served by one handler or one per function.

    ``None`` loads the per-function handlers (``task_api.submit.handler``...), as deployed in the cloud.
    """
    ensure_lambda_importable()
    from task_api.routes import API_ROUTES, FUNCTION_HANDLERS

    if handler is None:
        handler = {name: load_handler(path) for name, path in FUNCTION_HANDLERS.items()}
    if isinstance(handler, Mapping):
        return [GatewayRoute(r.method, r.resource, handler[r.function]) for r in API_ROUTES]
    return [GatewayRoute(r.method, r.resource, handler) for r in API_ROUTES]


def ensure_lambda_importable() -> None:
    """Put the repository's ``lambda/`` folder on sys.path (pytest does it; ``python -m`` does not)."""
    folder = str(ROOT / "lambda")
    if folder not in sys.path:
        sys.path.append(folder)


def load_handler(dotted: str) -> Handler:
    """``package.module.attribute`` -> the callable."""
    ensure_lambda_importable()
    module, _, attribute = dotted.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module), attribute)
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY"), help="default: $GATEWAY_API_KEY")
    parser.add_argument(
        "--api-keys-env",
        default="GATEWAY_API_KEYS",
        help="environment variable holding a JSON object of key value -> key id (several tenants); "
        "used instead of --api-key when set",
    )
    parser.add_argument(
        "--static",
        type=Path,
        action="append",
        default=[],
        help="folder served for GET requests outside the API (repeatable: searched in order)",
    )
    parser.add_argument(
        "--handler", default="task_api.app.handler", help="dotted handler for every route, or 'per-function'"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # X-Ray has no daemon here; Powertools would otherwise try to send segments.
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    api_key: str | dict[str, str] | None = args.api_key
    if tenants := os.environ.get(args.api_keys_env):
        api_key = {str(k): str(v) for k, v in json.loads(tenants).items()}
    if not api_key:
        api_key = secrets.token_urlsafe(24)
        # Shown once on the terminal that started the gateway, so its user can call it; never logged.
        print(f"no --api-key or GATEWAY_API_KEY given; generated key: {api_key}", file=sys.stderr)
    handler = None if args.handler == "per-function" else load_handler(args.handler)
    gateway = LocalGateway(api_key, task_api_routes(handler), args.host, args.port, args.static).start()
    print(f"task API on {gateway.url} (x-api-key required)", file=sys.stderr)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
