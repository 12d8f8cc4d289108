"""The engine: one inference worker thread, the model catalog and cache, the batcher and progress.

Everything that touches the accelerator (loading, generating, model upscalers) runs on the single worker
thread, so the event loop stays free for /progress, /interrupt and health checks while a job runs.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from PIL import Image

from contract.errors import FieldIssue
from inference_api import esrgan
from inference_api.batcher import MicroBatcher
from inference_api.errors import ApiError, interrupted, invalid, invalid_field, not_ready, out_of_memory
from inference_api.generation import GenerationJob, GenerationResult, plan_calls, run_batch
from inference_api.images import decode_image, encode_png
from inference_api.jobs import build_job, response_body, unsupported_notes
from inference_api.loading import DeviceSettings, LoadedModel, free, load_model
from inference_api.models import (
    ExtraBatchImagesRequest,
    ExtraSingleImageRequest,
    Img2ImgRequest,
    Txt2ImgRequest,
    _ExtrasBase,
    _GenerationBase,
)
from inference_api.progress import Interrupted, Progress
from inference_api.registry import Catalog, ModelEntry, PipelineCache
from inference_api.settings import ServerSettings
from inference_api.upscale import UpscaleOutcome, check_target, html_info, resolve_name, upscale_one

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_UPSCALERS_LOADED = 2


@dataclass
class Counters:
    requests: int = 0
    images: int = 0
    errors: int = 0
    interrupted: int = 0
    out_of_memory: int = 0
    pipeline_seconds: float = 0.0


class Engine:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.device = DeviceSettings.create(
            settings.device, settings.dtype, channels_last=settings.channels_last, compile=settings.compile
        )
        self.catalog = Catalog(settings.models_dir)
        self.cache = PipelineCache(settings.cache_size, on_evict=free)
        self.progress = Progress()
        self.counters = Counters()
        self.batcher: MicroBatcher[GenerationJob] = MicroBatcher(
            self._run_jobs, max_batch=settings.max_batch, window=settings.batch_window_ms / 1000.0
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._batch_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._current: ModelEntry | None = None
        self._options: dict[str, Any] = {"CLIP_stop_at_last_layers": 1}
        self._upscalers: OrderedDict[str, esrgan.EsrganUpscaler] = OrderedDict()
        self._preload: asyncio.Task[None] | None = None
        self.load_error: str | None = None
        self.warming = False
        self.warmup_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.catalog.refresh)
        self._select_default()
        self.batcher.start()
        self._schedule_preload()

    async def stop(self) -> None:
        if self._preload is not None:
            self._preload.cancel()
        await self.batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _select_default(self) -> None:
        wanted = self.settings.default_model
        entry = self.catalog.find(wanted) if wanted else None
        if wanted and entry is None:
            log.error("default model %r not found in %s", wanted, self.settings.models_dir)
        models = self.catalog.models
        with self._lock:
            if entry is None and self._current is None and models and not wanted:
                entry = models[0]
            if entry is not None:
                self._current = entry

    def _schedule_preload(self) -> None:
        current = self.current
        if self.settings.preload and current is not None and current.name not in self.cache:
            self._preload = asyncio.create_task(self._load_in_background(current))

    async def _load_in_background(self, entry: ModelEntry) -> None:
        try:
            if self.settings.warmup:
                self.warming = True
            await self.in_worker(self._ensure_loaded, entry)
            if self.settings.warmup:
                await self.in_worker(self._warm_up, entry)
        except Exception as exc:  # reported by /ready and the next request, the server stays up
            log.exception("loading %s failed", entry.name)
            self.load_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.warming = False

    def _warm_up(self, entry: ModelEntry) -> None:
        """One short generation per batch size at the model's native size, before /ready says yes.

        With --compile every new input shape compiles (minutes on a big UNet); paying that before the pod
        takes traffic keeps the first jobs from timing out.
        """
        pipe = self._ensure_loaded(entry).text2img
        side = int(getattr(pipe, "default_sample_size", 64) or 64) * int(getattr(pipe, "vae_scale_factor", 8) or 8)
        started = time.monotonic()
        for batch in range(1, self.settings.max_batch + 1):
            with torch.inference_mode():
                pipe(prompt=["warm-up"] * batch, num_inference_steps=2, width=side, height=side, output_type="pil")
        self.warmup_seconds = time.monotonic() - started
        log.info(
            "warmed up %s (batch 1..%d, %dpx) in %.1fs", entry.name, self.settings.max_batch, side, self.warmup_seconds
        )

    @property
    def current(self) -> ModelEntry | None:
        with self._lock:
            return self._current

    def ready(self) -> bool:
        current = self.current
        return current is not None and current.name in self.cache and not self.warming

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # -- models ------------------------------------------------------------------------------------

    def _ensure_loaded(self, entry: ModelEntry) -> LoadedModel:
        loaded = self.cache.get(entry.name)
        if loaded is not None:
            return loaded
        self.cache.make_room()
        started = time.monotonic()
        loaded = load_model(entry, self.settings.models_dir, self.device)
        self.cache.put(entry.name, loaded, time.monotonic() - started)
        self.load_error = None
        log.info("loaded %s in %.2fs", entry.name, time.monotonic() - started)
        return loaded

    def find_model(self, name: str, field: str) -> ModelEntry:
        entry = self.catalog.find(name)
        if entry is None:
            available = ", ".join(m.title for m in self.catalog.models) or "(none)"
            raise invalid_field(field, "one_of", f"unknown model {name!r}; available: {available}")
        return entry

    async def switch_model(self, name: str, field: str = "sd_model_checkpoint") -> ModelEntry:
        entry = self.find_model(name, field)
        await self._load_or_fail(entry)
        with self._lock:
            self._current = entry
        return entry

    async def _load_or_fail(self, entry: ModelEntry) -> LoadedModel:
        try:
            return await self.in_worker(self._ensure_loaded, entry)
        except ApiError:
            raise
        except Exception as exc:
            if _is_oom(exc):
                _release_memory()
                raise out_of_memory() from None
            log.exception("loading %s failed", entry.name)
            raise ApiError(500, "model_load_failed", f"could not load {entry.name}: {type(exc).__name__}") from None

    async def refresh(self) -> None:
        await asyncio.to_thread(self.catalog.refresh)
        self._select_default()
        self._schedule_preload()

    async def unload(self) -> int:
        return await self.in_worker(self.cache.clear)

    async def reload(self) -> None:
        current = self.current
        if current is None:
            raise not_ready("no model is selected")
        await self._load_or_fail(current)

    def options(self) -> dict[str, Any]:
        current = self.current
        return {
            **self._options,
            "sd_model_checkpoint": current.title if current else None,
            "sd_checkpoints_limit": self.cache.capacity,
            "samples_format": "png",
        }

    async def set_options(self, body: dict[str, Any]) -> None:
        issues: list[FieldIssue] = []
        clip = body.get("CLIP_stop_at_last_layers")
        if clip is not None and (not isinstance(clip, int) or isinstance(clip, bool) or not 1 <= clip <= 12):
            issues.append(FieldIssue("CLIP_stop_at_last_layers", "range", "must be an integer between 1 and 12"))
        checkpoint = body.get("sd_model_checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            issues.append(FieldIssue("sd_model_checkpoint", "type", "must be a model title"))
        if issues:
            raise invalid(issues)
        if checkpoint:
            await self.switch_model(checkpoint)
        # A1111 keeps every option it is sent; we keep the simple ones and apply those we understand.
        for key, value in body.items():
            if key != "sd_model_checkpoint" and (value is None or isinstance(value, str | int | float | bool)):
                self._options[key] = value

    # -- generation --------------------------------------------------------------------------------

    async def txt2img(self, req: Txt2ImgRequest) -> dict[str, Any]:
        return await self._generate(req, self._job(req, "txt2img"))

    async def img2img(self, req: Img2ImgRequest) -> dict[str, Any]:
        return await self._generate(req, self._job(req, "inpaint" if req.mask else "img2img"))

    def _job(self, req: _GenerationBase, task: str) -> GenerationJob:
        model, issues = self.current, []
        override = req.checkpoint_override()
        if override:
            try:
                model = self.find_model(override, "override_settings.sd_model_checkpoint")
            except ApiError as exc:
                model, issues = None, exc.fields
        default_clip_skip = int(self._options.get("CLIP_stop_at_last_layers") or 1)
        return build_job(req, task, model, issues, default_clip_skip)

    async def _generate(self, req: _GenerationBase, job: GenerationJob) -> dict[str, Any]:
        self.counters.requests += 1
        try:
            result: GenerationResult = await self.batcher.submit(job)
        except ApiError:
            self.counters.errors += 1
            raise
        result.notes.extend(unsupported_notes(req))
        self.counters.images += len(result.images)
        self.counters.pipeline_seconds += result.pipeline_seconds / max(result.batch.requests, 1)
        if not req.override_settings_restore_afterwards and req.checkpoint_override():
            with self._lock:
                self._current = job.model
        return response_body(req, job, result)

    async def _run_jobs(self, jobs: list[GenerationJob]) -> list[GenerationResult | BaseException]:
        return await self.in_worker(self._run_jobs_sync, jobs)

    def _run_jobs_sync(self, jobs: list[GenerationJob]) -> list[GenerationResult | BaseException]:
        try:
            return list(self._run_once(jobs))
        except Interrupted:
            self.counters.interrupted += len(jobs)
            return [interrupted() for _ in jobs]
        except ApiError as exc:
            return [exc for _ in jobs]
        except Exception as exc:
            if not _is_oom(exc):
                log.exception("generation failed")
                error = ApiError(500, "generation_failed", f"generation failed: {type(exc).__name__}: {exc}"[:500])
                return [error for _ in jobs]
            _release_memory()
            if len(jobs) == 1:
                self.counters.out_of_memory += 1
                return [out_of_memory()]
        # A merged batch that ran out of memory gets a second chance one request at a time.
        results: list[GenerationResult | BaseException] = []
        for job in jobs:
            results += self._run_jobs_sync([job])
        return results

    def _run_once(self, jobs: list[GenerationJob]) -> list[GenerationResult]:
        self.progress.begin(jobs[0].task, job_count=len(plan_calls(jobs)), steps=jobs[0].steps)
        try:
            try:
                loaded = self._ensure_loaded(jobs[0].model)
            except Exception as exc:
                if _is_oom(exc):
                    raise
                log.exception("loading %s failed", jobs[0].model.name)
                raise ApiError(500, "model_load_failed", f"could not load {jobs[0].model.name}") from None
            return run_batch(loaded, jobs, self.progress, next(self._batch_ids), self.device.device)
        finally:
            self.progress.end()

    # -- extras ------------------------------------------------------------------------------------

    async def extra_single(self, req: ExtraSingleImageRequest) -> dict[str, Any]:
        image = decode_image(req.image, "image")
        check_target(image.width, image.height, req)
        outcome = await self._upscale(image, req)
        return {"html_info": html_info(req, outcome.notes), "image": encode_png(outcome.image)}

    async def extra_batch(self, req: ExtraBatchImagesRequest) -> dict[str, Any]:
        images: list[Image.Image] = []
        issues: list[FieldIssue] = []
        for i, item in enumerate(req.imageList):
            try:
                image = decode_image(item.data, f"imageList.{i}.data")
                check_target(image.width, image.height, req)
                images.append(image)
            except ApiError as exc:
                issues += exc.fields
        if issues:
            raise invalid(issues)
        notes: list[str] = []
        encoded = []
        for image in images:
            outcome = await self._upscale(image, req)
            notes += outcome.notes
            encoded.append(encode_png(outcome.image))
        return {"html_info": html_info(req, notes), "images": encoded}

    async def _upscale(self, image: Image.Image, req: _ExtrasBase) -> UpscaleOutcome:
        available = {u.name for u in self.catalog.upscalers}
        uses_model = any(resolve_name(n, available) for n in (req.upscaler_1, req.upscaler_2))
        work = functools.partial(upscale_one, image, req, available, self._run_upscaler)
        # Resamplers are plain CPU work; model upscalers need the accelerator, so the worker thread.
        return await (self.in_worker(work) if uses_model else asyncio.to_thread(work))

    def _run_upscaler(self, name: str, image: Image.Image) -> Image.Image:
        upscaler = self._upscalers.get(name)
        if upscaler is None:
            entry = next(u for u in self.catalog.upscalers if u.name == name)
            upscaler = esrgan.EsrganUpscaler(esrgan.load(entry.path), self.device.device, self.device.dtype)
            self._upscalers[name] = upscaler
            while len(self._upscalers) > MAX_UPSCALERS_LOADED:
                self._upscalers.popitem(last=False)
        self._upscalers.move_to_end(name)
        return upscaler.upscale(image)

    # -- introspection -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "ready": self.ready(),
            "current_model": self.current.title if self.current else None,
            "loaded_models": self.cache.names(),
            "batcher": {
                **self.batcher.stats.as_dict(),
                "waiting": self.batcher.waiting,
                "max_batch": self.batcher.max_batch,
            },
            "cache": dict(self.cache.stats.__dict__),
            "requests": c.requests,
            "images": c.images,
            "errors": c.errors,
            "interrupted": c.interrupted,
            "out_of_memory": c.out_of_memory,
            "pipeline_seconds": round(c.pipeline_seconds, 6),
            "warmup_seconds": round(self.warmup_seconds, 3),
            "device": self.device.device,
            "dtype": str(self.device.dtype).removeprefix("torch."),
        }


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _release_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
