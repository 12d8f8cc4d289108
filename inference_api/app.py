"""HTTP routes: the AUTOMATIC1111 API subset plus /health, /ready, /stats and /metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from contract.errors import FieldIssue
from inference_api import __version__
from inference_api.engine import Engine
from inference_api.errors import ApiError, invalid
from inference_api.metrics import render_metrics
from inference_api.models import (
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
from inference_api.samplers import SCHEDULES, choose, sampler_names
from inference_api.settings import ServerSettings

log = logging.getLogger(__name__)


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
    _install_error_handlers(app)
    _install_body_limit(app, settings.max_body_bytes)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        current = engine.current
        if engine.ready():
            return JSONResponse({"status": "ready", "model": current.title if current else None})
        body = ApiError(503, "not_ready", _not_ready_reason(engine)).body()
        return JSONResponse(body, status_code=503)

    @app.post("/sdapi/v1/txt2img", response_model=ImagesResponse)
    async def txt2img(req: Txt2ImgRequest) -> dict[str, Any]:
        return await engine.txt2img(req)

    @app.post("/sdapi/v1/img2img", response_model=ImagesResponse)
    async def img2img(req: Img2ImgRequest) -> dict[str, Any]:
        return await engine.img2img(req)

    @app.post("/sdapi/v1/extra-single-image", response_model=ExtraSingleImageResponse)
    async def extra_single(req: ExtraSingleImageRequest) -> dict[str, Any]:
        return await engine.extra_single(req)

    @app.post("/sdapi/v1/extra-batch-images", response_model=ExtraBatchImagesResponse)
    async def extra_batch(req: ExtraBatchImagesRequest) -> dict[str, Any]:
        return await engine.extra_batch(req)

    @app.get("/sdapi/v1/options")
    async def get_options() -> dict[str, Any]:
        return engine.options()

    @app.post("/sdapi/v1/options")
    async def set_options(body: dict[str, Any]) -> None:
        await engine.set_options(body)

    @app.get("/sdapi/v1/sd-models", response_model=list[SDModelItem])
    async def sd_models() -> list[dict[str, Any]]:
        return [m.describe() for m in engine.catalog.models]

    @app.post("/sdapi/v1/refresh-checkpoints")
    async def refresh_checkpoints() -> None:
        await engine.refresh()

    @app.post("/sdapi/v1/unload-checkpoint")
    async def unload_checkpoint() -> None:
        await engine.unload()

    @app.post("/sdapi/v1/reload-checkpoint")
    async def reload_checkpoint() -> None:
        await engine.reload()

    @app.post("/sdapi/v1/interrupt")
    async def interrupt() -> None:
        engine.progress.interrupt()

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
        found = [{"name": u.name, "model_name": u.name, "model_path": str(u.path)} for u in engine.catalog.upscalers]
        return builtin + found

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return engine.stats()

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(render_metrics(engine.stats()), media_type="text/plain; version=0.0.4")

    return app


def _not_ready_reason(engine: Engine) -> str:
    if engine.load_error:
        return f"loading the model failed: {engine.load_error}"
    wanted = engine.settings.default_model
    if engine.current is None and wanted and engine.catalog.find(wanted) is None:
        return f"default model {wanted!r} not found in the model directory"
    if engine.current is None:
        return "no model found in the model directory"
    if engine.warming:
        return f"model {engine.current.title} is warming up"
    return f"model {engine.current.title} is not loaded yet"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            issues.append(FieldIssue(".".join(loc) or "(body)", str(err.get("type", "invalid")), message))
        error = invalid(issues or [FieldIssue("(body)", "invalid", "invalid request body")])
        return JSONResponse(error.body(), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace on the wire; the log has it.
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(ApiError(500, "internal_error", "internal error").body(), status_code=500)


def _install_body_limit(app: FastAPI, limit: int) -> None:
    @app.middleware("http")
    async def body_limit(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            body = ApiError(413, "request_too_large", f"request body over {limit} bytes").body()
            return JSONResponse(body, status_code=413)
        response: Response = await call_next(request)
        return response
