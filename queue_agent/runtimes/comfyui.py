"""ComfyUI: POST /prompt, follow the websocket (/ws?clientId=) to completion, collect files via /history and /view.

The websocket is opened before the prompt is queued so no event can be missed, and it reconnects
with the same client id when it drops. Because a completion event can still be lost while the
socket was down, every reconnect (and every quiet ``poll_interval``) asks /history directly: the
websocket makes completion fast, /history makes it certain.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from contract import ErrorCode, QueueMessage, TaskType, set_at
from queue_agent.errors import PermanentError, RuntimeInterrupted, TransientError
from queue_agent.job import Artifact, PreparedTask, RuntimeOutput, RuntimeResult
from queue_agent.runtimes.base import (
    HTTP_TIMEOUT,
    PROBE_TIMEOUT,
    InputPath,
    OnDispatch,
    artifact_from_bytes,
    check_response,
    dispatch_trace,
    json_body,
    poll_until,
    unreachable,
)

log = logging.getLogger(__name__)

_RECONNECTED = {"type": "_reconnected"}


class _Events:
    """Messages of one ComfyUI websocket client id, reconnecting when the socket drops."""

    def __init__(self, url: str, reconnect_attempts: int, reconnect_delay: float) -> None:
        self._url = url
        self._attempts = reconnect_attempts
        self._delay = reconnect_delay
        self._ws: ClientConnection | None = None
        self.reconnects = 0

    async def open(self) -> None:
        self._ws = await self._connect()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self) -> ClientConnection:
        last: Exception | None = None
        for attempt in range(self._attempts):
            try:
                return await connect(self._url, proxy=None, max_size=64 * 1024 * 1024, open_timeout=10)
            except (OSError, WebSocketException, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(self._delay * (attempt + 1))
        raise TransientError(
            f"comfyui websocket unreachable ({type(last).__name__})", code=ErrorCode.RUNTIME_UNAVAILABLE
        ) from None

    async def next(self, quiet: float) -> dict[str, Any] | None:
        """The next JSON event; ``None`` after ``quiet`` seconds without one; ``_RECONNECTED`` after a drop."""
        assert self._ws is not None
        try:
            async with asyncio.timeout(quiet):
                while True:
                    frame = await self._ws.recv()
                    if isinstance(frame, str):  # binary frames are preview images
                        event = json.loads(frame)
                        if isinstance(event, dict):
                            return event
        except TimeoutError:
            return None
        except (WebSocketException, OSError):
            log.warning("comfyui websocket dropped; reconnecting")
            self._ws = await self._connect()
            self.reconnects += 1
            return _RECONNECTED


class ComfyUIRuntime:
    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        poll_interval: float = 5.0,
        reconnect_attempts: int = 10,
        reconnect_delay: float = 0.5,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._client = client or httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False)
        self.poll_interval = poll_interval
        self._reconnect_attempts = reconnect_attempts
        self._reconnect_delay = reconnect_delay
        # Prompts queued by this agent and not finished yet, oldest first: the first is the one running.
        self._queued: list[str] = []

    def _url(self, path: str) -> str:
        return str(httpx.URL(self.base_url).join(path))

    def _ws_url(self, client_id: str) -> str:
        url = httpx.URL(self._url("ws"))
        scheme = "wss" if url.scheme == "https" else "ws"
        return str(url.copy_with(scheme=scheme, params={"clientId": client_id}))

    async def _probe(self) -> bool:
        try:
            resp = await self._client.get(self._url("system_stats"), timeout=PROBE_TIMEOUT)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def wait_ready(self, limit: float) -> None:
        await poll_until(self._probe, limit)

    async def healthy(self) -> bool:
        return await self._probe()

    def model_of(self, task: PreparedTask) -> str | None:
        return None  # a workflow names its own models; ComfyUI loads them in queue order

    async def interrupt(self) -> None:
        body = {"prompt_id": self._queued[0]} if self._queued else {}
        try:
            await self._client.post(self._url("interrupt"), json=body, timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning("interrupt not delivered to comfyui", extra={"error": type(exc).__name__})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def prepare(self, message: QueueMessage, inputs: dict[InputPath, bytes]) -> PreparedTask:
        """Upload referenced images (ComfyUI serves uploads while it executes another prompt)."""
        if message.tasktype is not TaskType.PIPELINE:
            raise PermanentError(
                f"comfyui runs pipeline tasks, not {message.tasktype}", code=ErrorCode.UNSUPPORTED_TASKTYPE
            )
        workflow = copy.deepcopy(message.content) if inputs else message.content
        for path, data in inputs.items():
            set_at(workflow, path, await self._upload(f"{message.id}-{'-'.join(map(str, path))}.png", data))
        return PreparedTask(message, json.dumps(workflow, separators=(",", ":")).encode())

    async def run(self, task: PreparedTask, on_dispatch: OnDispatch | None = None) -> RuntimeOutput:
        client_id = uuid.uuid4().hex
        async with self._events(client_id) as events:
            prompt_id = await self._queue(task.body, client_id, on_dispatch)
            self._queued.append(prompt_id)
            try:
                entry = await self._wait(prompt_id, events)
            except asyncio.CancelledError:
                # Cancelled while still waiting in ComfyUI's queue (or running): take it off the queue.
                await asyncio.shield(self._unqueue(prompt_id))
                raise
            finally:
                self._queued.remove(prompt_id)

        async def decode() -> RuntimeResult:
            # ComfyUI serves /view while it executes the next prompt: fetch the files then.
            return RuntimeResult(
                artifacts=await self._collect(entry.get("outputs") or {}),
                document={"prompt_id": prompt_id, "outputs": entry.get("outputs"), "status": entry.get("status")},
            )

        return RuntimeOutput(decode)

    async def _unqueue(self, prompt_id: str) -> None:
        try:
            await self._client.post(self._url("queue"), json={"delete": [prompt_id]}, timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning("could not take the prompt off comfyui's queue", extra={"error": type(exc).__name__})

    @contextlib.asynccontextmanager
    async def _events(self, client_id: str) -> AsyncIterator[_Events]:
        events = _Events(self._ws_url(client_id), self._reconnect_attempts, self._reconnect_delay)
        await events.open()
        try:
            yield events
        finally:
            await events.close()

    async def _upload(self, name: str, data: bytes) -> str:
        try:
            resp = await self._client.post(
                self._url("upload/image"),
                files={"image": (name, data, "application/octet-stream")},
                data={"overwrite": "true", "type": "input"},
            )
        except httpx.HTTPError as exc:
            raise unreachable("upload/image", exc) from None
        check_response(resp, "upload/image")
        body = json_body(resp, "upload/image")
        subfolder = body.get("subfolder") or ""
        return f"{subfolder}/{body['name']}" if subfolder else str(body["name"])

    async def _queue(self, workflow: bytes, client_id: str, on_dispatch: OnDispatch | None) -> str:
        body = b'{"prompt":' + workflow + b',"client_id":' + json.dumps(client_id).encode() + b"}"
        try:
            resp = await self._client.post(
                self._url("prompt"),
                content=body,
                headers={"Content-Type": "application/json"},
                extensions=dispatch_trace(on_dispatch),
            )
        except httpx.HTTPError as exc:
            raise unreachable("prompt", exc) from None
        check_response(resp, "prompt")
        prompt_id = json_body(resp, "prompt").get("prompt_id")
        if not isinstance(prompt_id, str):
            raise PermanentError("comfyui did not return a prompt_id", code=ErrorCode.RUNTIME_BAD_RESPONSE)
        return prompt_id

    async def _wait(self, prompt_id: str, events: _Events) -> dict[str, Any]:
        """Follow events until the prompt is done; return its /history entry."""
        while True:
            event = await events.next(self.poll_interval)
            if event is None or event is _RECONNECTED:
                entry = await self._history(prompt_id)
                if entry is not None and _finished(entry):
                    return _checked(entry)
                continue
            kind, data = event.get("type"), event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if kind == "execution_error":
                raise _execution_error(data)
            if kind == "execution_interrupted":
                raise RuntimeInterrupted("comfyui interrupted the prompt")
            if kind == "progress":
                log.debug("progress", extra={"value": data.get("value"), "max": data.get("max")})
            if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                return _checked(await self._settled_history(prompt_id))

    async def _settled_history(self, prompt_id: str, limit: float = 10.0) -> dict[str, Any]:
        # execution_success can arrive just before the history entry is written.
        holder: dict[str, Any] = {}

        async def present() -> bool:
            entry = await self._history(prompt_id)
            if entry is not None:
                holder["entry"] = entry
            return entry is not None

        try:
            await poll_until(present, limit, interval=0.05)
        except TimeoutError:
            raise TransientError("comfyui finished but has no history for the prompt") from None
        return holder["entry"]

    async def _history(self, prompt_id: str) -> dict[str, Any] | None:
        try:
            resp = await self._client.get(self._url(f"history/{prompt_id}"))
        except httpx.HTTPError as exc:
            raise unreachable("history", exc) from None
        check_response(resp, "history")
        entry = json_body(resp, "history").get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def _collect(self, outputs: dict[str, Any]) -> list[Artifact]:
        files = [
            item
            for _, node_out in sorted(outputs.items(), key=lambda kv: _node_order(kv[0]))
            if isinstance(node_out, dict)
            for value in node_out.values()
            if isinstance(value, list)
            for item in value
            if isinstance(item, dict) and isinstance(item.get("filename"), str)
        ]
        return list(await asyncio.gather(*(self._download(f) for f in files)))

    async def _download(self, ref: dict[str, Any]) -> Artifact:
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        try:
            resp = await self._client.get(self._url("view"), params=params)
        except httpx.HTTPError as exc:
            raise unreachable("view", exc) from None
        check_response(resp, "view")
        return artifact_from_bytes(resp.content, ref["filename"])


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)


def _finished(entry: dict[str, Any]) -> bool:
    status = entry.get("status") or {}
    return bool(status.get("completed")) or status.get("status_str") in {"success", "error"}


def _checked(entry: dict[str, Any]) -> dict[str, Any]:
    status = entry.get("status") or {}
    if status.get("status_str") == "error":
        for name, data in status.get("messages") or []:
            if name == "execution_error" and isinstance(data, dict):
                raise _execution_error(data)
            if name == "execution_interrupted":
                raise RuntimeInterrupted("comfyui interrupted the prompt")
        raise PermanentError("comfyui reported an error running the workflow", code=ErrorCode.RUNTIME_REJECTED)
    return entry


def _execution_error(data: dict[str, Any]) -> Exception:
    kind = str(data.get("exception_type", ""))
    message = f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_message', kind)}".strip()
    if "OutOfMemory" in kind:
        return TransientError(f"comfyui ran out of memory: {message}", code=ErrorCode.RUNTIME_UNAVAILABLE)
    return PermanentError(f"comfyui failed the workflow: {message}", code=ErrorCode.RUNTIME_REJECTED)
