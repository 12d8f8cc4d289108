"""AUTOMATIC1111's HTTP API (``/sdapi/v1``), spoken by stable-diffusion-webui and by our ``inference_api``.

The two differ only in how readiness and liveness are probed: the webui answers ``sd-models`` once
its models are listed; ours has ``/ready`` and ``/health``.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import secrets
from typing import Any

import httpx

from contract import ErrorCode, QueueMessage, TaskType, refused_override_keys, set_at
from queue_agent.errors import PermanentError
from queue_agent.job import PreparedTask, RuntimeOutput, RuntimeResult
from queue_agent.runtimes.base import (
    PROBE_TIMEOUT,
    InputPath,
    OnDispatch,
    RuntimeHttp,
    artifact_from_bytes,
    json_body,
    poll_until,
)

log = logging.getLogger(__name__)

_ENDPOINTS = {
    TaskType.TEXT_TO_IMAGE: "txt2img",
    TaskType.IMAGE_TO_IMAGE: "img2img",
    TaskType.EXTRA_SINGLE_IMAGE: "extra-single-image",
    TaskType.EXTRA_BATCH_IMAGE: "extra-batch-images",
}
# Request fields echoed back in "parameters" that only repeat our (large) inputs.
# AUTOMATIC1111 settings the agent applies on start: no URL fetching by the webui (and none to local
# addresses, should a later change turn the first back on).
WEBUI_SAFE_OPTIONS = {"api_enable_requests": False, "api_forbid_local_requests": True}
_ECHOED_INPUTS = ("init_images", "mask", "image", "imageList")


class A1111Runtime:
    def __init__(self, base_url: str, *, dynamic_model: bool, ours: bool, client: httpx.AsyncClient | None = None):
        self._http = RuntimeHttp(base_url, log, client)
        self.dynamic_model = dynamic_model
        # Our runtime exposes /health and /ready at the server root, next to /sdapi/v1.
        self._ours = ours

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def wait_ready(self, limit: float) -> None:
        await poll_until(lambda: self._http.probe("/ready" if self._ours else "sd-models"), limit)
        if not self._ours:
            await self._disable_url_fetching()

    async def _disable_url_fetching(self) -> None:
        """The webui fetches http(s) image URLs itself unless told not to: the agent resolves (and vets) every
        reference, so the webui never needs to, and a URL that slipped past would not be followed."""
        await self._http.call("POST", "options", json=WEBUI_SAFE_OPTIONS, timeout=PROBE_TIMEOUT)

    async def healthy(self) -> bool:
        return await self._http.probe("/health" if self._ours else "sd-models")

    def model_of(self, task: PreparedTask) -> str | None:
        return task.message.sd_model_checkpoint if self.dynamic_model else None

    async def interrupt(self) -> None:
        await self._http.notify("interrupt", "interrupt not delivered to the runtime")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def prepare(self, message: QueueMessage, inputs: dict[InputPath, bytes]) -> PreparedTask:
        if message.tasktype not in _ENDPOINTS:
            raise PermanentError(
                f"tasktype {message.tasktype} needs a comfyui runtime", code=ErrorCode.UNSUPPORTED_TASKTYPE
            )
        return PreparedTask(message, inline_body(_guarded_content(message), inputs))

    async def run(self, task: PreparedTask, on_dispatch: OnDispatch | None = None) -> RuntimeOutput:
        message = task.message
        if self.dynamic_model and message.sd_model_checkpoint:
            # Loading a model keeps the runtime busy too: that counts as dispatched.
            await self._switch_model(message.sd_model_checkpoint, on_dispatch)
        endpoint = _ENDPOINTS[message.tasktype]
        resp = await self._http.post_body(endpoint, task.body, on_dispatch)

        async def decode() -> RuntimeResult:
            return _result(message.tasktype, json_body(resp, endpoint))

        return RuntimeOutput(decode)

    async def _switch_model(self, wanted: str, on_dispatch: OnDispatch | None) -> None:
        """Load ``wanted`` through /options unless it is already the current checkpoint."""
        resp = await self._http.call("GET", "options")
        current = json_body(resp, "options").get("sd_model_checkpoint")
        if _same_checkpoint(current, wanted):
            return
        log.info("switching model", extra={"from_model": current, "to_model": wanted})
        await self._http.post_body("options", json.dumps({"sd_model_checkpoint": wanted}).encode(), on_dispatch)


def _same_checkpoint(current: Any, wanted: str) -> bool:
    # The webui reports titles like "model.safetensors [6ce0161689]"; tasks usually name the file.
    if not isinstance(current, str):
        return False
    return current == wanted or current.split(" [", 1)[0] == wanted.split(" [", 1)[0]


def _result(tasktype: TaskType, body: Any) -> RuntimeResult:
    if not isinstance(body, dict):
        raise PermanentError("runtime answered with an unexpected body", code=ErrorCode.RUNTIME_BAD_RESPONSE)
    if tasktype is TaskType.EXTRA_SINGLE_IMAGE:
        images = [body.get("image")] if body.get("image") else []
    else:
        images = body.get("images") or []
    try:
        artifacts = [artifact_from_bytes(base64.b64decode(img)) for img in images if isinstance(img, str)]
    except ValueError:
        raise PermanentError(
            "runtime answered with an image that is not base64", code=ErrorCode.RUNTIME_BAD_RESPONSE
        ) from None
    document: dict[str, Any] = {k: v for k, v in body.items() if k not in {"images", "image"}}
    parameters = document.get("parameters")
    if isinstance(parameters, dict):
        document["parameters"] = {k: v for k, v in parameters.items() if k not in _ECHOED_INPUTS}
    if isinstance(document.get("info"), str):
        try:
            document["info"] = json.loads(document["info"])
        except ValueError:
            pass
    return RuntimeResult(artifacts=artifacts, document=document)


def _guarded_content(message: QueueMessage) -> dict[str, Any]:
    """A generation task's content with its option overrides checked and always restored after it: no task
    changes the runtime's settings for the tasks after it (whatever published the message)."""
    content = message.content
    if message.tasktype not in (TaskType.TEXT_TO_IMAGE, TaskType.IMAGE_TO_IMAGE):
        return content
    if refused := refused_override_keys(content.get("override_settings")):
        raise PermanentError(
            f"task.content.override_settings: options a task may not override: {', '.join(refused)}",
            code=ErrorCode.INPUT_REFUSED,
        )
    return {**content, "override_settings_restore_afterwards": True}


def inline_body(content: dict[str, Any], inputs: dict[InputPath, bytes]) -> bytes:
    """The JSON body with each resolved input inlined as base64, built without a str copy of the images.

    The content is serialised with a short placeholder per input, then the base64 bytes are spliced in:
    peak memory is the inputs, their base64 once, and the body, instead of also a str of each and of the
    whole document (what ``json.dumps`` over inlined strings would hold).
    """
    if not inputs:
        return json.dumps(content, separators=(",", ":")).encode()
    payload = copy.deepcopy(content)
    nonce = secrets.token_hex(8)  # client text cannot guess it
    marks = {path: f"\x00{nonce}-{i}\x00" for i, path in enumerate(inputs)}
    for path, mark in marks.items():
        set_at(payload, path, mark)
    skeleton = json.dumps(payload, separators=(",", ":")).encode()
    spots = sorted((skeleton.index(json.dumps(mark).encode()), path) for path, mark in marks.items())
    parts: list[bytes] = []
    cursor = 0
    for start, path in spots:
        parts += [skeleton[cursor:start], b'"', base64.b64encode(inputs[path]), b'"']
        cursor = start + len(json.dumps(marks[path]).encode())
    parts.append(skeleton[cursor:])
    return b"".join(parts)
