"""The one interface every runtime adapter implements, and the HTTP plumbing they share."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from contract import ErrorCode, QueueMessage
from queue_agent.errors import PermanentError, RuntimeInterrupted, TransientError
from queue_agent.job import Artifact, PreparedTask, RuntimeOutput

InputPath = tuple[str | int, ...]
OnDispatch = Callable[[], None]


class Runtime(Protocol):
    """A model server on localhost that turns a task's content into artifacts."""

    async def wait_ready(self, limit: float) -> None:
        """Return once the runtime serves requests; raise TimeoutError after ``limit`` seconds."""

    async def healthy(self) -> bool:
        """One liveness probe; False when the runtime does not answer."""

    async def prepare(self, message: QueueMessage, inputs: dict[InputPath, bytes]) -> PreparedTask:
        """Materialise resolved inputs the way this runtime takes them; no GPU work happens here."""

    async def run(self, task: PreparedTask, on_dispatch: OnDispatch | None = None) -> RuntimeOutput:
        """Run one prepared task. Raise TransientError (worth retrying) or PermanentError (never).

        ``on_dispatch`` is called as soon as the runtime has been handed work (the request that
        makes it busy is on the wire), so the agent can start its own AWS work without delaying it.
        """

    def model_of(self, task: PreparedTask) -> str | None:
        """The checkpoint this task makes the runtime switch to, or None when it runs on whatever is loaded.

        The runner never sends a switching task while calls for another model are still in flight.
        """

    async def interrupt(self) -> None:
        """Ask the runtime to stop the job it is running now (best effort)."""

    async def aclose(self) -> None: ...


# Generation calls are bounded by the agent's job timeout, not by the HTTP client.
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None)
PROBE_TIMEOUT = httpx.Timeout(5.0)

_MAGIC: list[tuple[bytes, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
    (b"GIF87a", "gif", "image/gif"),
    (b"GIF89a", "gif", "image/gif"),
]
_BY_EXT = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
}


def artifact_from_bytes(data: bytes, filename: str | None = None) -> Artifact:
    """Name an output by its file name when the runtime gives one, else by its magic bytes."""
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[1].lower()
        if ext in _BY_EXT:
            return Artifact(data, ext, _BY_EXT[ext])
    for magic, ext, content_type in _MAGIC:
        if data.startswith(magic):
            return Artifact(data, ext, content_type)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Artifact(data, "webp", "image/webp")
    if data[4:8] == b"ftyp":
        return Artifact(data, "mp4", "video/mp4")
    return Artifact(data, "png", "image/png")


def check_response(response: httpx.Response, what: str) -> None:
    """2xx passes; 429 and 5xx are transient; any other status means the runtime refused the task."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _error_detail(response)
    if status == 429 or status >= 500:
        raise TransientError(
            f"{what}: runtime answered {status}{detail}",
            code=ErrorCode.RUNTIME_UNAVAILABLE,
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    if status == 409 and _error_code(response) == "interrupted":
        raise RuntimeInterrupted(f"{what}: the runtime interrupted the call")
    raise PermanentError(f"{what}: runtime rejected the task ({status}){detail}", code=ErrorCode.RUNTIME_REJECTED)


def retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_code(response: httpx.Response) -> str | None:
    """Our runtime's machine-readable error code (``{"error": {"code": ...}}``), if the body has one."""
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _error_detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()
        return f": {text[:300]}" if text else ""
    if isinstance(body, dict):
        # FastAPI says "detail", the webui "error"/"errors", ComfyUI "error" plus per-node "node_errors".
        useful = {k: body[k] for k in ("detail", "error", "errors", "message", "node_errors") if body.get(k)}
        if len(useful) == 1 and isinstance(next(iter(useful.values())), str):
            return f": {next(iter(useful.values()))}"
        if useful:
            body = useful
    return f": {json.dumps(body, default=str)[:800]}"


def dispatch_trace(on_dispatch: OnDispatch | None) -> dict[str, Any]:
    """httpx request extensions that call ``on_dispatch`` once the request body has been sent."""
    if on_dispatch is None:
        return {}

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == "http11.send_request_body.complete":
            on_dispatch()

    return {"trace": trace}


def unreachable(what: str, exc: Exception) -> TransientError:
    return TransientError(f"{what}: runtime unreachable ({type(exc).__name__})", code=ErrorCode.RUNTIME_UNAVAILABLE)


async def poll_until(probe: Any, limit: float, interval: float = 0.5) -> None:
    """Call ``probe()`` until it returns True; TimeoutError after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        if await probe():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"runtime not ready after {limit:g}s")
        await asyncio.sleep(min(interval, remaining))


class RuntimeHttp:
    """One runtime's HTTP endpoint, as every adapter speaks to it: paths under its base URL, readiness probes,
    calls whose failures read as task errors, and best-effort notices whose failures are only logged."""

    def __init__(self, base_url: str, log: logging.Logger, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.client = client or httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False)
        self._log = log

    def url(self, path: str) -> str:
        return str(httpx.URL(self.base_url).join(path))

    async def probe(self, path: str) -> bool:
        """One short GET of ``path``; True when it answers 200."""
        try:
            resp = await self.client.get(self.url(path), timeout=PROBE_TIMEOUT)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def call(self, method: str, path: str, *, what: str | None = None, **kwargs: Any) -> httpx.Response:
        """A request the task depends on: unreachable is transient, a non-2xx answer as ``check_response`` says."""
        what = what or path
        try:
            resp = await self.client.request(method, self.url(path), **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(what, exc) from None
        check_response(resp, what)
        return resp

    async def post_body(self, path: str, body: bytes, on_dispatch: OnDispatch | None) -> httpx.Response:
        """POST a JSON ``body`` that makes the runtime busy; ``on_dispatch`` runs once it is on the wire."""
        return await self.call(
            "POST",
            path,
            content=body,
            headers={"Content-Type": "application/json"},
            extensions=dispatch_trace(on_dispatch),
        )

    async def notify(self, path: str, failure: str, json: Any = None) -> None:
        """A short best-effort POST: when it cannot be delivered, ``failure`` is logged and nothing raised."""
        try:
            await self.client.post(self.url(path), json=json, timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            self._log.warning(failure, extra={"error": type(exc).__name__})

    async def aclose(self) -> None:
        await self.client.aclose()


def json_body(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise PermanentError(
            f"{what}: runtime answered with invalid JSON", code=ErrorCode.RUNTIME_BAD_RESPONSE
        ) from None
