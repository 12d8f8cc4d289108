"""A fake AUTOMATIC1111 runtime over real HTTP: the endpoints the agent uses, with scripted behaviour.

Like the webui it runs one generation at a time (a lock), honours /interrupt (the current call
returns early with what it has), and switches models through /options. Every generation call is
logged with its start and end (monotonic clock of this process) for the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.agent_fakes.images import png
from tests.agent_fakes.server import ServedFake

MODELS = ["model-a.safetensors", "model-b.safetensors"]


@dataclass
class Behavior:
    delay: float = 0.0  # seconds each generation call takes
    transient_rate: float = 0.0  # fraction of generation calls answered 503
    reject: bool = False  # answer 422 to every generation call
    garbage: bool = False  # answer 200 with a body that is not the API's JSON
    seed: int = 1234
    fail_first: int = 0  # answer 503 to this many generation calls first
    retry_after: float | None = None  # the Retry-After header (seconds) sent with every 503
    transient_status: int = 503  # what a transient failure answers (503, or 500 as a crashing server would)


@dataclass
class Call:
    endpoint: str
    started: float  # the request arrived
    began: float = 0.0  # the (single) worker took it: before that it waited in the runtime's queue
    done: float = 0.0  # the worker let go of it (free for the next call; its answer is still being sent)
    ended: float = 0.0
    status: int = 0
    payload: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


class FakeA1111(ServedFake):
    def __init__(self, behavior: Behavior | None = None, *, ours: bool = False) -> None:
        self.behavior = behavior or Behavior()
        self.ours = ours
        self.calls: list[Call] = []
        # Generation requests as they arrive, before they wait for the (single) worker: prompts.
        self.arrivals: list[str] = []
        self.model_switches: list[str] = []
        self.interrupts = 0
        self.options: dict[str, Any] = {"sd_model_checkpoint": f"{MODELS[0]} [0123456789]"}
        self._rng = random.Random(self.behavior.seed)
        self._guard = threading.Lock()
        self._busy: asyncio.Lock | None = None
        self._interrupt: asyncio.Event | None = None
        routes = [
            Route("/sdapi/v1/sd-models", self._sd_models),
            Route("/sdapi/v1/options", self._options, methods=["GET", "POST"]),
            Route("/sdapi/v1/interrupt", self._do_interrupt, methods=["POST"]),
            Route("/sdapi/v1/txt2img", self._generate, methods=["POST"]),
            Route("/sdapi/v1/img2img", self._generate, methods=["POST"]),
            Route("/sdapi/v1/extra-single-image", self._generate, methods=["POST"]),
            Route("/sdapi/v1/extra-batch-images", self._generate, methods=["POST"]),
        ]
        if ours:
            routes += [Route("/health", self._ok), Route("/ready", self._ok)]
        self.starlette = Starlette(routes=routes)
        self.app = _CallTimer(self.starlette)

    # -- lifecycle (start, stop, with: ServedFake) ---------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"{self.url}/sdapi/v1/"

    # -- inspection ------------------------------------------------------------------------------
    def finished_calls(self, status: int | None = None) -> list[Call]:
        """Calls the fake has answered (``status`` is set before the response leaves, ``ended`` after)."""
        with self._guard:
            return [c for c in self.calls if c.status and (status is None or c.status == status)]

    def prompts(self, status: int = 200) -> list[str]:
        return [str(c.payload.get("prompt", "")) for c in self.finished_calls(status)]

    # -- endpoints -------------------------------------------------------------------------------
    async def _ok(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _sd_models(self, request: Request) -> Response:
        return JSONResponse([{"title": f"{m} [0123456789]", "model_name": m.split(".")[0]} for m in MODELS])

    async def _options(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            wanted = body.get("sd_model_checkpoint")
            if wanted is not None:
                if wanted.split(" [")[0] not in MODELS:
                    return JSONResponse({"detail": f"model {wanted} not found"}, status_code=422)
                self.model_switches.append(wanted)
                self.options["sd_model_checkpoint"] = f"{wanted.split(' [')[0]} [0123456789]"
            # The webui keeps every other option it is sent.
            self.options.update({k: v for k, v in body.items() if k != "sd_model_checkpoint"})
            return JSONResponse(None)
        return JSONResponse(self.options)

    async def _do_interrupt(self, request: Request) -> Response:
        self.interrupts += 1
        if self._interrupt is not None:
            self._interrupt.set()
        return JSONResponse(None)

    async def _generate(self, request: Request) -> Response:
        if self._busy is None:
            self._busy, self._interrupt = asyncio.Lock(), asyncio.Event()
        assert self._interrupt is not None
        endpoint = request.url.path.rsplit("/", 1)[1]
        payload = await request.json()
        with self._guard:
            self.arrivals.append(str(payload.get("prompt", "")))
        async with self._busy:
            call = Call(endpoint, request.state.arrived, began=time.monotonic(), payload=payload)
            request.state.call = call  # _CallTimer sets call.ended once the response is sent
            with self._guard:
                self.calls.append(call)
            status, body = await self._answer(endpoint, payload, call)
            call.done = time.monotonic()
            call.status = status
            headers = {}
            if status >= 500 and self.behavior.retry_after is not None:
                headers["Retry-After"] = f"{self.behavior.retry_after:g}"
            return JSONResponse(body, status_code=status, headers=headers)

    async def _answer(self, endpoint: str, payload: dict[str, Any], call: Call) -> tuple[int, Any]:
        assert self._interrupt is not None
        behavior = self.behavior
        if behavior.garbage:
            return 200, {"images": ["%%% not base64 %%%"]}
        if behavior.reject:
            return 422, {"detail": [{"loc": ["body", "prompt"], "msg": "rejected by the fake", "type": "value_error"}]}
        if behavior.fail_first > 0:
            behavior.fail_first -= 1
            return behavior.transient_status, {"error": "fake overload"}
        if behavior.transient_rate and self._rng.random() < behavior.transient_rate:
            return behavior.transient_status, {"error": "fake overload"}
        bad = _undecodable_inputs(endpoint, payload)
        if bad:
            return 422, {"detail": f"not base64: {bad}"}
        self._interrupt.clear()
        if behavior.delay:
            try:
                await asyncio.wait_for(self._interrupt.wait(), behavior.delay)
                call.interrupted = True
            except TimeoutError:
                pass
        count = int(payload.get("batch_size", 1)) * int(payload.get("n_iter", 1))
        images = [base64.b64encode(png(n)).decode() for n in range(count)]
        if endpoint == "extra-single-image":
            return 200, {"image": images[0], "html_info": "<p>upscaled</p>"}
        if endpoint == "extra-batch-images":
            n = len(payload.get("imageList", []))
            return 200, {"images": [base64.b64encode(png(i)).decode() for i in range(n)], "html_info": ""}
        params = {k: v for k, v in payload.items() if k != "init_images"}
        params["init_images"] = payload.get("init_images")
        info = {
            "seed": 42,
            "all_seeds": list(range(42, 42 + count)),
            "sd_model_name": self.options["sd_model_checkpoint"],
        }
        return 200, {"images": images, "parameters": params, "info": json.dumps(info)}


class _CallTimer:
    """ASGI wrapper timing each generation call as the runtime experiences it: from the request's
    arrival to the last byte of the response. Between two calls the runtime has nothing to do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].rsplit("/", 1)[-1] not in _GENERATION:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["arrived"] = time.monotonic()

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and "call" in state:
                state["call"].ended = time.monotonic()

        await self.app(scope, receive, timed_send)


_GENERATION = frozenset({"txt2img", "img2img", "extra-single-image", "extra-batch-images"})


def _undecodable_inputs(endpoint: str, payload: dict[str, Any]) -> list[str]:
    """Image inputs the real webui could not decode: references the agent failed to inline."""
    values: list[tuple[str, Any]] = []
    if endpoint == "img2img":
        values += [(f"init_images.{i}", v) for i, v in enumerate(payload.get("init_images") or [])]
    if endpoint == "extra-single-image":
        values.append(("image", payload.get("image")))
    if endpoint == "extra-batch-images":
        values += [(f"imageList.{i}", item.get("data")) for i, item in enumerate(payload.get("imageList") or [])]
    bad = []
    for name, value in values:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.agent_fakes.a1111 --port N --delay S``: the fake in its own process.

    ``GET /_fake/calls`` returns the call log (monotonic times of that process) for benchmarks.
    """
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--transient-rate", type=float, default=0.0)
    parser.add_argument("--transient-status", type=int, default=503)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    behavior = Behavior(
        delay=args.delay, transient_rate=args.transient_rate, transient_status=args.transient_status, seed=args.seed
    )
    fake = FakeA1111(behavior)

    async def calls(request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "started": c.started,
                    "began": c.began,
                    "done": c.done,
                    "ended": c.ended,
                    "status": c.status,
                    "prompt": str(c.payload.get("prompt", "")),
                }
                for c in fake.finished_calls()
                if c.ended
            ]
        )

    async def reset(request: Request) -> Response:
        with fake._guard:
            fake.calls.clear()
        return JSONResponse(None)

    fake.starlette.add_route("/_fake/calls", calls)
    fake.starlette.add_route("/_fake/reset", reset, methods=["POST"])
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
