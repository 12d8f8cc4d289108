"""HTTP routes: the AUTOMATIC1111 API subset plus /health, /ready, /stats and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from contract import ErrorCode, FieldIssue
from inference_api import __version__, a1111_routes
from inference_api.embeddings import describe as describe_embeddings
from inference_api.engine import Engine
from inference_api.errors import ClientGone, InferenceError, invalid
from inference_api.http_errors import error_response, plain_error
from inference_api.http_schemas import (
    ExtraBatchImagesRequest,
    ExtraBatchImagesResponse,
    ExtraSingleImageRequest,
    ExtraSingleImageResponse,
    ImagesResponse,
    Img2ImgRequest,
    ProgressResponse,
    SDModelItem,
    Txt2ImgRequest,
    UpscalerItem,
)
from inference_api.metrics import render_metrics
from inference_api.samplers import SCHEDULES, choose, sampler_names
from inference_api.settings import ServerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def create_app(settings: ServerSettings) -> FastAPI:
    engine = Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="inference_api", version=__version__, lifespan=lifespan)
    app.state.engine = engine
    retry_after = settings.retry_after_s
    _install_error_handlers(app, retry_after)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.get("/health")
    async def health() -> JSONResponse:
        # Liveness: fails only when this process cannot recover (kubelet restarts the container).
        if engine.health.healthy:
            return JSONResponse({"status": "ok"})
        return plain_error(503, ErrorCode.UNHEALTHY, engine.health.reason())

    @app.get("/ready")
    async def ready() -> JSONResponse:
        # Readiness: a request sent now will run (with --no-preload, the first one loads the model).
        reason = engine.not_ready_reason()
        if reason is None:
            current = engine.selection.current
            loaded = engine.selection.is_loaded(current)
            return JSONResponse({"status": "ready", "model": current.title if current else None, "loaded": loaded})
        return plain_error(503, ErrorCode.NOT_READY, reason, retry_after)

    @app.post("/sdapi/v1/txt2img", response_model=ImagesResponse)
    async def txt2img(req: Txt2ImgRequest, request: Request) -> dict[str, Any]:
        return await until_disconnected(request, engine.txt2img(req))

    @app.post("/sdapi/v1/img2img", response_model=ImagesResponse)
    async def img2img(req: Img2ImgRequest, request: Request) -> dict[str, Any]:
        return await until_disconnected(request, engine.img2img(req))

    @app.post("/sdapi/v1/extra-single-image", response_model=ExtraSingleImageResponse)
    async def extra_single(req: ExtraSingleImageRequest) -> dict[str, Any]:
        return await engine.extras.single(req)

    @app.post("/sdapi/v1/extra-batch-images", response_model=ExtraBatchImagesResponse)
    async def extra_batch(req: ExtraBatchImagesRequest) -> dict[str, Any]:
        return await engine.extras.batch(req)

    @app.get("/sdapi/v1/options")
    async def get_options() -> dict[str, Any]:
        return engine.options.snapshot()

    @app.post("/sdapi/v1/options")
    async def set_options(body: dict[str, Any]) -> None:
        await engine.options.apply(body)

    @app.get("/sdapi/v1/sd-models", response_model=list[SDModelItem])
    async def sd_models() -> list[dict[str, Any]]:
        return [m.describe(engine.selection.hashes.get(m.name)) for m in engine.selection.catalog.models]

    @app.post("/sdapi/v1/refresh-checkpoints")
    async def refresh_checkpoints() -> None:
        await engine.refresh()

    @app.post("/sdapi/v1/unload-checkpoint")
    async def unload_checkpoint() -> None:
        await engine.selection.unload()

    @app.post("/sdapi/v1/reload-checkpoint")
    async def reload_checkpoint() -> None:
        await engine.selection.reload()

    @app.post("/sdapi/v1/interrupt")
    async def interrupt() -> dict[str, Any]:
        # As AUTOMATIC1111: the running request stops at its next step and answers 200 with its images.
        engine.progress.interrupt()
        return {}  # A1111 answers an empty object

    @app.get("/sdapi/v1/progress", response_model=ProgressResponse)
    async def progress(skip_current_image: bool = False) -> dict[str, Any]:
        return engine.progress.snapshot()

    @app.get("/sdapi/v1/samplers")
    async def samplers() -> list[dict[str, Any]]:
        # A1111's shape; the "<sampler> Karras" spellings are listed too, since they are accepted.
        names = sampler_names()
        return [{"name": n, "aliases": list(choose(n).sampler.aliases), "options": {}} for n in names]

    @app.get("/sdapi/v1/schedulers")
    async def schedulers() -> list[dict[str, Any]]:
        return [{"name": s.name.lower().replace(" ", "_"), "label": s.name} for s in SCHEDULES]

    @app.get("/sdapi/v1/upscalers", response_model=list[UpscalerItem])
    async def upscalers() -> list[dict[str, Any]]:
        builtin = [{"name": n, "scale": 4} for n in ("None", "Lanczos", "Nearest")]
        catalog = engine.selection.catalog
        found = [{"name": u.name, "model_name": u.name, "model_path": str(u.path)} for u in catalog.upscalers]
        return builtin + found

    @app.get("/sdapi/v1/loras")
    async def loras() -> list[dict[str, Any]]:
        return engine.networks.describe_loras()

    @app.get("/sdapi/v1/embeddings")
    async def embeddings_list() -> dict[str, Any]:
        return await asyncio.to_thread(describe_embeddings, engine.networks.embeddings)

    @app.post("/sdapi/v1/refresh-embeddings")
    async def refresh_embeddings() -> None:
        await asyncio.to_thread(engine.networks.refresh)

    @app.post("/sdapi/v1/refresh-loras")
    async def refresh_loras() -> None:
        await asyncio.to_thread(engine.networks.refresh)

    app.include_router(a1111_routes.router(engine))

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return engine.stats()

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(render_metrics(engine.stats()), media_type="text/plain; version=0.0.4")

    return app


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientGone` once the client disconnects (``work`` is cancelled then).

    Cancelling a generation takes it out of the queue, or stops it at its next step when it runs alone.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone("the client disconnected")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def _disconnect(request: Request) -> None:
    # The body has been read; the next ASGI message is the disconnect (or never comes).
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _install_error_handlers(app: FastAPI, retry_after: int) -> None:
    @app.exception_handler(InferenceError)
    async def domain_error(request: Request, exc: InferenceError) -> JSONResponse:
        return error_response(exc, retry_after)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            issues.append(FieldIssue(".".join(loc) or "(body)", str(err.get("type", "invalid")), message))
        return error_response(invalid(issues or [FieldIssue("(body)", "invalid", "invalid request body")]), 0)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace on the wire; the log has it.
        log.exception("unhandled error on %s", request.url.path)
        return plain_error(500, ErrorCode.INTERNAL_ERROR, "internal error")


class BodyLimit:
    """Refuse bodies declared larger than ``limit`` (plain ASGI: it must not get between a handler and the
    client's disconnect message, as Starlette's BaseHTTPMiddleware would)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                response = plain_error(413, ErrorCode.REQUEST_TOO_LARGE, f"request body over {self.limit} bytes")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
