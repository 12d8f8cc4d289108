"""ComfyUI: POST /prompt, follow the websocket (/ws?clientId=) to completion, collect files via /history and /view.

What a workflow may do is bounded before it is queued: its node types must be on the allowlist (core
nodes by default), and every ``LoadImage``/``LoadImageMask`` must name a file this agent uploaded for this
very task (a name such as ``other.png [output]`` would read another task's files). Once collected, the
task's /history entry, its uploads and its outputs are deleted (the files where the folders are mounted).

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
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from contract import ErrorCode, QueueMessage, TaskType, set_at
from queue_agent.errors import PermanentError, RuntimeInterrupted, TransientError
from queue_agent.job import Artifact, PreparedTask, RuntimeOutput, RuntimeResult
from queue_agent.runtimes.base import InputPath, OnDispatch, RuntimeHttp, artifact_from_bytes, json_body, poll_until

log = logging.getLogger(__name__)

_RECONNECTED = {"type": "_reconnected"}

# Core ComfyUI nodes that compute on tensors and read only models or this task's uploads; nodes that read or
# write arbitrary files, run code or reach the network stay out unless COMFYUI_ALLOWED_NODES adds them.
DEFAULT_NODES = frozenset(
    {
        "CheckpointLoaderSimple", "CLIPLoader", "DualCLIPLoader", "UNETLoader", "VAELoader", "LoraLoader",
        "LoraLoaderModelOnly", "ControlNetLoader", "UpscaleModelLoader", "CLIPVisionLoader",
        "CLIPTextEncode", "CLIPSetLastLayer", "ConditioningCombine", "ConditioningSetArea",
        "ConditioningConcat", "ConditioningAverage", "ControlNetApply", "ControlNetApplyAdvanced",
        "EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy", "LatentComposite", "LatentBlend",
        "KSampler", "KSamplerAdvanced", "VAEDecode", "VAEEncode", "VAEEncodeForInpaint", "VAEDecodeTiled",
        "VAEEncodeTiled", "SetLatentNoiseMask", "RepeatLatentBatch",
        "ImageScale", "ImageScaleBy", "ImageUpscaleWithModel", "ImageInvert", "ImageBatch", "ImageCrop",
        "ImagePadForOutpaint", "ImageToMask", "MaskToImage", "InvertMask",
        "LoadImage", "LoadImageMask", "SaveImage", "PreviewImage",
    }
)  # fmt: skip
# Nodes whose "image" input names a file on the ComfyUI server.
_FILE_LOADERS = frozenset({"LoadImage", "LoadImageMask"})


def node_allowlist(spec: Iterable[str]) -> frozenset[str] | None:
    """The node types a workflow may use (``@default``: DEFAULT_NODES); None when ``*`` allows any."""
    names: set[str] = set()
    for item in spec:
        if item == "*":
            return None
        names |= DEFAULT_NODES if item == "@default" else {item}
    return frozenset(names)


@dataclass(frozen=True)
class ComfyFiles:
    """ComfyUI's input and output folders as this container sees them (a volume shared with the runtime)."""

    input_dir: Path | None = None
    output_dir: Path | None = None

    @classmethod
    def of(cls, input_dir: str | None, output_dir: str | None) -> ComfyFiles:
        return cls(Path(input_dir) if input_dir else None, Path(output_dir) if output_dir else None)

    def remove_inputs(self, names: Iterable[str]) -> None:
        self._remove(self.input_dir, names)

    def remove_outputs(self, names: Iterable[str]) -> None:
        self._remove(self.output_dir, names)

    @staticmethod
    def _remove(folder: Path | None, names: Iterable[str]) -> None:
        if folder is None:
            return
        root = folder.resolve()
        for name in names:
            target = (root / name).resolve()
            # Names come from ComfyUI's answers: never follow one out of the folder.
            if target.is_relative_to(root) and target != root:
                target.unlink(missing_ok=True)


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
        allowed_nodes: frozenset[str] | None = DEFAULT_NODES,
        files: ComfyFiles | None = None,
    ) -> None:
        self._http = RuntimeHttp(base_url, log, client)
        self.poll_interval = poll_interval
        self._reconnect_attempts = reconnect_attempts
        self._reconnect_delay = reconnect_delay
        # Prompts queued by this agent and not finished yet, oldest first: the first is the one running.
        self._queued: list[str] = []
        self.allowed_nodes = allowed_nodes
        self.files = files or ComfyFiles()

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def _ws_url(self, client_id: str) -> str:
        url = httpx.URL(self._http.url("ws"))
        scheme = "wss" if url.scheme == "https" else "ws"
        return str(url.copy_with(scheme=scheme, params={"clientId": client_id}))

    async def wait_ready(self, limit: float) -> None:
        await poll_until(self.healthy, limit)

    async def healthy(self) -> bool:
        return await self._http.probe("system_stats")

    def model_of(self, task: PreparedTask) -> str | None:
        return None  # a workflow names its own models; ComfyUI loads them in queue order

    async def interrupt(self) -> None:
        body = {"prompt_id": self._queued[0]} if self._queued else {}
        await self._http.notify("interrupt", "interrupt not delivered to comfyui", json=body)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def prepare(self, message: QueueMessage, inputs: dict[InputPath, bytes]) -> PreparedTask:
        """Upload referenced images (ComfyUI serves uploads while it executes another prompt)."""
        if message.tasktype is not TaskType.PIPELINE:
            raise PermanentError(
                f"comfyui runs pipeline tasks, not {message.tasktype}", code=ErrorCode.UNSUPPORTED_TASKTYPE
            )
        self._check_nodes(message.content)
        workflow = copy.deepcopy(message.content) if inputs else message.content
        uploaded: list[str] = []
        for path, data in inputs.items():
            # A fresh name per task: nothing another task uploaded (or will) is ever ours.
            name = await self._upload(f"{message.id}-{uuid.uuid4().hex[:12]}-{'-'.join(map(str, path))}.png", data)
            set_at(workflow, path, name)
            uploaded.append(name)
        _check_file_names(workflow, frozenset(uploaded))
        body = json.dumps(workflow, separators=(",", ":")).encode()
        return PreparedTask(message, body, files=tuple(uploaded))

    def _check_nodes(self, workflow: dict[str, Any]) -> None:
        if self.allowed_nodes is None:
            return
        refused = sorted(
            f"{node_id} ({node.get('class_type')!r})"
            for node_id, node in workflow.items()
            if isinstance(node, dict) and node.get("class_type") not in self.allowed_nodes
        )
        if refused:
            raise PermanentError(
                f"task.content: node types not allowed on this runtime: {', '.join(refused)} "
                "(the operator's COMFYUI_ALLOWED_NODES lists them)",
                code=ErrorCode.NODE_NOT_ALLOWED,
            )

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
                await asyncio.shield(self._forget(prompt_id, {}, task.files))
                raise
            except Exception:
                await self._forget(prompt_id, {}, task.files)
                raise
            finally:
                self._queued.remove(prompt_id)
        self.files.remove_inputs(task.files)

        async def decode() -> RuntimeResult:
            # ComfyUI serves /view while it executes the next prompt: fetch the files then.
            outputs = entry.get("outputs") or {}
            try:
                artifacts = await self._collect(outputs)
            finally:
                await self._forget(prompt_id, outputs, ())
            return RuntimeResult(
                artifacts=artifacts,
                document={"prompt_id": prompt_id, "outputs": outputs, "status": entry.get("status")},
            )

        return RuntimeOutput(decode)

    async def _forget(self, prompt_id: str, outputs: dict[str, Any], uploads: tuple[str, ...]) -> None:
        """Delete the prompt's /history entry, its output files and ``uploads``: nothing of a finished task stays
        for another client of this ComfyUI to read."""
        self.files.remove_inputs(uploads)
        self.files.remove_outputs(_file_names(outputs, "output"))
        await self._http.notify(
            "history", "could not delete the prompt's comfyui history", json={"delete": [prompt_id]}
        )

    async def _unqueue(self, prompt_id: str) -> None:
        await self._http.notify("queue", "could not take the prompt off comfyui's queue", json={"delete": [prompt_id]})

    @contextlib.asynccontextmanager
    async def _events(self, client_id: str) -> AsyncIterator[_Events]:
        events = _Events(self._ws_url(client_id), self._reconnect_attempts, self._reconnect_delay)
        await events.open()
        try:
            yield events
        finally:
            await events.close()

    async def _upload(self, name: str, data: bytes) -> str:
        resp = await self._http.call(
            "POST",
            "upload/image",
            files={"image": (name, data, "application/octet-stream")},
            data={"overwrite": "true", "type": "input"},
        )
        body = json_body(resp, "upload/image")
        subfolder = body.get("subfolder") or ""
        return f"{subfolder}/{body['name']}" if subfolder else str(body["name"])

    async def _queue(self, workflow: bytes, client_id: str, on_dispatch: OnDispatch | None) -> str:
        body = b'{"prompt":' + workflow + b',"client_id":' + json.dumps(client_id).encode() + b"}"
        resp = await self._http.post_body("prompt", body, on_dispatch)
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
        resp = await self._http.call("GET", f"history/{prompt_id}", what="history")
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
        resp = await self._http.call("GET", "view", params=params)
        return artifact_from_bytes(resp.content, ref["filename"])


def _check_file_names(workflow: dict[str, Any], uploaded: frozenset[str]) -> None:
    """Every file a loader node names must be one this task uploaded."""
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or node.get("class_type") not in _FILE_LOADERS:
            continue
        inputs = node.get("inputs")
        name = inputs.get("image") if isinstance(inputs, dict) else None
        if name not in uploaded:
            raise PermanentError(
                f"task.content.{node_id}.inputs.image: {name!r} is not an image of this task; a "
                f"{node.get('class_type')} must load an s3:// or https:// reference given in the task",
                code=ErrorCode.INPUT_REFUSED,
            )


def _file_names(outputs: dict[str, Any], kind: str) -> list[str]:
    """The ``subfolder/filename`` of every file of type ``kind`` listed in a /history entry's outputs."""
    names = []
    for node_out in outputs.values():
        for value in node_out.values() if isinstance(node_out, dict) else ():
            for item in value if isinstance(value, list) else ():
                if isinstance(item, dict) and isinstance(item.get("filename"), str) and item.get("type") == kind:
                    subfolder = item.get("subfolder") or ""
                    names.append(f"{subfolder}/{item['filename']}" if subfolder else item["filename"])
    return names


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
