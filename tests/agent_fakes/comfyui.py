"""A fake ComfyUI over real HTTP and a real websocket: the API the agent uses, with scripted behaviour.

Follows ComfyUI's protocol: /prompt queues a workflow for a client id, progress arrives on
/ws?clientId=, ``execution_success`` is sent just before the history entry is written (as in
recent ComfyUI) and ``executing`` with ``node: null`` after it; outputs are listed in
/history/{id} and served by /view. LoadImage inputs must name an uploaded file (/upload/image).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.agent_fakes.images import mp4, png
from tests.agent_fakes.server import ServedFake


@dataclass
class ComfyBehavior:
    delay: float = 0.2
    drop_socket_once: bool = False  # close every websocket mid-run, losing the completion events


@dataclass
class ComfyState:
    uploads: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    drops: int = 0
    connections: int = 0
    interrupts: int = 0


class FakeComfyUI(ServedFake):
    def __init__(self, behavior: ComfyBehavior | None = None, io_dir: Path | None = None) -> None:
        """``io_dir``: where uploads (``input/``) and outputs (``output/``) are also written as files, as a
        real ComfyUI writes them to its folders."""
        self.behavior = behavior or ComfyBehavior()
        self.io_dir = io_dir
        if io_dir is not None:
            (io_dir / "input").mkdir(parents=True, exist_ok=True)
            (io_dir / "output").mkdir(parents=True, exist_ok=True)
        self.state = ComfyState()
        self._sockets: dict[str, WebSocket] = {}
        self._interrupt: asyncio.Event | None = None
        self.app = Starlette(
            routes=[
                Route("/system_stats", self._stats),
                Route("/upload/image", self._upload, methods=["POST"]),
                Route("/prompt", self._prompt, methods=["POST"]),
                Route("/history/{prompt_id}", self._history),
                Route("/history", self._history_delete, methods=["POST"]),
                Route("/view", self._view),
                Route("/interrupt", self._do_interrupt, methods=["POST"]),
                WebSocketRoute("/ws", self._ws),
            ]
        )

    @property
    def base_url(self) -> str:
        return f"{self.url}/"

    # -- endpoints -------------------------------------------------------------------------------
    async def _stats(self, request: Request) -> Response:
        return JSONResponse({"system": {"os": "fake", "comfyui_version": "0.0-fake"}, "devices": []})

    async def _upload(self, request: Request) -> Response:
        raw = await request.body()
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        form = BytesParser(policy=default_policy).parsebytes(head + raw)
        for part in form.iter_parts():
            if part.get_param("name", header="content-disposition") == "image":
                name = part.get_filename() or "upload.png"
                self.state.uploads[name] = bytes(part.get_payload(decode=True))  # type: ignore[arg-type]
                self._write("input", name, self.state.uploads[name])
                return JSONResponse({"name": name, "subfolder": "", "type": "input"})
        return JSONResponse({"error": "no image"}, status_code=400)

    async def _prompt(self, request: Request) -> Response:
        body = await request.json()
        workflow, client_id = body.get("prompt") or {}, body.get("client_id")
        node_errors = {
            node_id: {"errors": [{"message": "Invalid image file", "details": node["inputs"]["image"]}]}
            for node_id, node in workflow.items()
            if node.get("class_type") == "LoadImage" and node["inputs"].get("image") not in self.state.uploads
        }
        if node_errors:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}
            return JSONResponse({"error": error, "node_errors": node_errors}, status_code=400)
        prompt_id = str(uuid.uuid4())
        self.state.prompts.append(workflow)
        asyncio.get_running_loop().create_task(self._execute(prompt_id, workflow, client_id))
        return JSONResponse({"prompt_id": prompt_id, "number": len(self.state.prompts), "node_errors": {}})

    async def _history(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        entry = self.state.history.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry else {})

    async def _history_delete(self, request: Request) -> Response:
        body = await request.json()
        for prompt_id in body.get("delete") or []:
            self.state.history.pop(prompt_id, None)
        return Response(status_code=200)

    def _write(self, folder: str, name: str, data: bytes) -> None:
        if self.io_dir is not None:
            (self.io_dir / folder / name).write_bytes(data)

    def files_on_disk(self) -> dict[str, list[str]]:
        assert self.io_dir is not None
        return {f: sorted(p.name for p in (self.io_dir / f).iterdir()) for f in ("input", "output")}

    async def _view(self, request: Request) -> Response:
        name = request.query_params.get("filename", "")
        if request.query_params.get("type") != "output" or name not in self.state.files:
            return Response(status_code=404)
        return Response(self.state.files[name], media_type="application/octet-stream")

    async def _do_interrupt(self, request: Request) -> Response:
        self.state.interrupts += 1
        if self._interrupt is not None:
            self._interrupt.set()
        return Response(status_code=200)

    async def _ws(self, websocket: WebSocket) -> None:
        client_id = websocket.query_params.get("clientId", "")
        await websocket.accept()
        self.state.connections += 1
        self._sockets[client_id] = websocket
        await websocket.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}})
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            if self._sockets.get(client_id) is websocket:
                del self._sockets[client_id]

    # -- execution -------------------------------------------------------------------------------
    async def _send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        socket = self._sockets.get(client_id)
        if socket is None:
            return  # like ComfyUI: events for a client that is not connected are lost
        try:
            await socket.send_json({"type": kind, "data": data})
            await socket.send_bytes(b"\x00\x00\x00\x01preview")  # binary preview frames are noise
        except Exception:
            self._sockets.pop(client_id, None)

    async def _execute(self, prompt_id: str, workflow: dict[str, Any], client_id: str) -> None:
        self._interrupt = asyncio.Event()
        await self._send(client_id, "execution_start", {"prompt_id": prompt_id})
        if self.behavior.drop_socket_once and self.state.drops == 0:
            self.state.drops += 1
            socket = self._sockets.pop(client_id, None)
            if socket is not None:
                await socket.close()
        outputs: dict[str, Any] = {}
        messages: list[Any] = [["execution_start", {"prompt_id": prompt_id}]]
        for node_id, node in workflow.items():
            await self._send(client_id, "executing", {"node": node_id, "prompt_id": prompt_id})
            kind = node.get("class_type")
            if kind == "KSampler":
                try:
                    await asyncio.wait_for(self._interrupt.wait(), self.behavior.delay)
                except TimeoutError:
                    pass
                else:
                    data = {"prompt_id": prompt_id, "node_id": node_id, "node_type": kind}
                    await self._send(client_id, "execution_interrupted", data)
                    self._record(prompt_id, {}, "error", [*messages, ["execution_interrupted", data]])
                    return
                await self._send(client_id, "progress", {"value": 1, "max": 1, "prompt_id": prompt_id})
            if kind == "FailingNode":
                data = {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": kind,
                    "exception_type": "RuntimeError",
                    "exception_message": "this node always fails",
                }
                await self._send(client_id, "execution_error", data)
                self._record(prompt_id, {}, "error", [*messages, ["execution_error", data]])
                return
            output = self._output_of(node_id, node)
            if output:
                outputs[node_id] = output
                await self._send(client_id, "executed", {"node": node_id, "output": output, "prompt_id": prompt_id})
        await self._send(client_id, "execution_success", {"prompt_id": prompt_id})
        await asyncio.sleep(0.05)  # the entry lands slightly after execution_success, as in ComfyUI
        self._record(prompt_id, outputs, "success", [*messages, ["execution_success", {"prompt_id": prompt_id}]])
        await self._send(client_id, "executing", {"node": None, "prompt_id": prompt_id})

    def _record(self, prompt_id: str, outputs: dict[str, Any], status: str, messages: list[Any]) -> None:
        self.state.history[prompt_id] = {
            "prompt": [0, prompt_id, {}, {}, []],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
        }

    def _output_of(self, node_id: str, node: dict[str, Any]) -> dict[str, Any]:
        kind = node.get("class_type")
        if kind == "SaveImage":
            items = []
            for n in range(int(node.get("inputs", {}).get("batch_size", 1))):
                name = f"ComfyUI_{node_id}_{len(self.state.files):05}_{n}.png"
                self.state.files[name] = png(len(self.state.files))
                self._write("output", name, self.state.files[name])
                items.append({"filename": name, "subfolder": "", "type": "output"})
            return {"images": items}
        if kind == "VHS_VideoCombine":
            name = f"AnimateDiff_{len(self.state.files):05}.mp4"
            self.state.files[name] = mp4(len(self.state.files))
            self._write("output", name, self.state.files[name])
            return {"gifs": [{"filename": name, "subfolder": "", "type": "output", "format": "video/h264-mp4"}]}
        return {}
