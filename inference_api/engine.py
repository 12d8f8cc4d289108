"""The engine: the runtime's lifecycle, and the generation entry points that tie its parts together.

Everything that touches the accelerator (loading, generating, model upscalers) runs on the single
:class:`~inference_api.worker.Worker` thread, so the event loop stays free for /progress, /interrupt and
health checks while a job runs. Its parts: :class:`~inference_api.selection.ModelSelection` (catalog,
current model, pipeline cache), :class:`~inference_api.a1111_options.A1111Options`,
:class:`~inference_api.execution.BatchRunner` (domain errors, out-of-memory fallback) and
:class:`~inference_api.extras.Extras`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from typing import Any

import torch

from inference_api import hires
from inference_api.a1111_options import A1111Options
from inference_api.batcher import MicroBatcher, QueueFull
from inference_api.catalog import ModelEntry
from inference_api.errors import InferenceError, Overloaded, Unhealthy
from inference_api.execution import BatchRunner, Outcome
from inference_api.extras import Extras
from inference_api.generation import GenerationJob, GenerationResult, prompt_chunks
from inference_api.health import Health
from inference_api.http_schemas import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from inference_api.jobs import build_job, refiner_request, response_body, set_refiner, unsupported_notes
from inference_api.loading import DeviceSettings
from inference_api.metrics import Counters
from inference_api.networks import NetworkCatalog
from inference_api.progress import Progress
from inference_api.scripts import SUPPORTED_SCRIPTS
from inference_api.selection import ModelSelection
from inference_api.settings import ServerSettings
from inference_api.tasks import TaskKind
from inference_api.worker import Worker

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.device = DeviceSettings.create(
            settings.device,
            settings.dtype,
            channels_last=settings.channels_last,
            compile=settings.compile,
            compile_mode=settings.compile_mode,
            fuse_qkv=settings.fuse_qkv,
            float8=settings.float8,
            sdxl_vae=settings.sdxl_vae,
        )
        self.worker = Worker()
        self.selection = ModelSelection(settings, self.device, self.worker)
        self.options = A1111Options(self.selection)
        self.progress = Progress()
        self.counters = Counters()
        self.networks = NetworkCatalog(settings.models_dir)
        # The alwayson scripts this runtime runs (GET /scripts); requests asking for others are refused.
        self.script_names: frozenset[str] = SUPPORTED_SCRIPTS
        self.health = Health(settings.unhealthy_after_failures)
        self.runner = BatchRunner(self.selection, self.progress, self.counters, self.health)
        self.extras = Extras(self.selection.catalog, self.device, self.worker, settings.png_compress_level)
        self.batcher: MicroBatcher[GenerationJob] = MicroBatcher(
            self._run_jobs,
            max_batch=settings.max_batch,
            window=settings.batch_window_ms / 1000.0,
            max_waiting=settings.max_queue,
        )
        self._preload: asyncio.Task[None] | None = None
        self.warming = False
        self.warmup_seconds = 0.0
        self.warmed_up: list[tuple[int, int, int]] = []  # (width, height, batch) generated before /ready

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.selection.catalog.refresh)
        await asyncio.to_thread(self.networks.refresh)
        self.selection.select_default()
        self.batcher.start()
        self._schedule_preload()

    async def stop(self) -> None:
        if self._preload is not None:
            self._preload.cancel()
        await self.batcher.stop()
        self.worker.shutdown()

    async def refresh(self) -> None:
        await self.selection.refresh()
        self._schedule_preload()

    def _schedule_preload(self) -> None:
        current = self.selection.current
        if self.settings.preload and current is not None and not self.selection.is_loaded(current):
            self._preload = asyncio.create_task(self._load_in_background(current))

    async def _load_in_background(self, entry: ModelEntry) -> None:
        try:
            if self.settings.warmup:
                self.warming = True
            await self.worker.run(self.selection.ensure_loaded, entry)
            if self.settings.warmup:
                await self.worker.run(self._warm_up, entry)
        except Exception as exc:  # reported by /ready and the next request, the server stays up
            log.exception("loading %s failed", entry.name)
            self.selection.load_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.warming = False

    def _warm_up(self, entry: ModelEntry) -> None:
        """One short generation per configured size bucket and batch size (with CFG), before /ready says yes.

        With --compile a new input shape may compile (minutes on a big UNet); paying that before the pod
        takes traffic keeps the first jobs from timing out.
        """
        pipe = self.selection.ensure_loaded(entry).text2img
        side = int(getattr(pipe, "default_sample_size", 64) or 64) * int(getattr(pipe, "vae_scale_factor", 8) or 8)
        sizes = self.settings.warmup_sizes or ((side, side),)
        started = time.monotonic()
        for width, height in sizes:
            for batch in range(1, self.settings.max_batch + 1):
                with torch.inference_mode():
                    pipe(prompt=["warm-up"] * batch, num_inference_steps=2, width=width, height=height)
                self.warmed_up.append((width, height, batch))
        self.warmup_seconds = time.monotonic() - started
        log.info("warmed up %s (%s) in %.1fs", entry.name, self.warmed_up, self.warmup_seconds)

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why a request sent now would not run; None when it would."""
        selection = self.selection
        current = selection.current
        if not self.health.healthy:
            return self.health.reason()
        if selection.load_error:
            return f"loading the model failed: {selection.load_error}"
        wanted = self.settings.default_model
        if current is None and wanted and selection.catalog.find(wanted) is None:
            return f"default model {wanted!r} not found in the model directory"
        if current is None:
            return "no model found in the model directory"
        if self.warming:
            return f"model {current.title} is warming up"
        # Without preloading, the first request loads the model: it will run, so the server is ready. With
        # it, ready once the model was loaded (one evicted since, e.g. to make room, reloads on demand).
        if self.settings.preload and not selection.was_loaded(current):
            return f"model {current.title} is not loaded yet"
        if self.batcher.waiting >= self.settings.max_queue:
            return f"{self.batcher.waiting} requests are waiting (the queue holds {self.settings.max_queue})"
        return None

    # -- generation --------------------------------------------------------------------------------

    async def txt2img(self, req: Txt2ImgRequest) -> dict[str, Any]:
        return await self._generate(req, TaskKind.TXT2IMG)

    async def img2img(self, req: Img2ImgRequest) -> dict[str, Any]:
        return await self._generate(req, TaskKind.INPAINT if req.mask else TaskKind.IMG2IMG)

    def _job(self, req: GenerationRequest, task: TaskKind) -> GenerationJob:
        """Decode and validate (CPU work: run off the event loop)."""
        model, issues = self.selection.current, []
        override = req.checkpoint_override()
        if override:
            try:
                model = self.selection.find(override, "override_settings.sd_model_checkpoint")
            except InferenceError as exc:
                model, issues = None, exc.fields
        job = build_job(req, task, model, issues, self.options.values, self.networks)
        refiner = refiner_request(req)
        if refiner is not None:
            entry = self.selection.find(refiner[0], "refiner_checkpoint")
            refiner_hash = self.selection.hashes.get(entry.name)
            set_refiner(job, entry, refiner[1], refiner_hash[:10] if refiner_hash else None)
        model_hash = self.selection.hashes.get(job.model.name)
        if model_hash:
            job.infotext_extra["Model hash"] = model_hash[:10]
        loaded = self.selection.cache.peek(job.model.name)
        if loaded is not None and loaded.text2img is not None:
            job.prompt_chunks = prompt_chunks(loaded.text2img, [*job.prompts[:1], *job.negative_prompts[:1]])
        return job

    async def _generate(self, req: GenerationRequest, task: TaskKind) -> dict[str, Any]:
        self.counters.requests += 1
        if not self.health.healthy and self.health.sticky_error:
            self.counters.errors += 1
            raise Unhealthy(self.health.reason())
        job = await asyncio.to_thread(self._job, req, task)
        hr = None
        if isinstance(req, Txt2ImgRequest) and req.enable_hr and job.motion is not None:
            job.notes.append("enable_hr is not applied to AnimateDiff videos")
        elif isinstance(req, Txt2ImgRequest) and req.enable_hr:
            hr = hires.plan(req, job.sampler, job.steps, job.width, job.height)
        try:
            result: GenerationResult = await self.batcher.submit(job)
            if hr is not None:
                result = await self._second_pass(job, result, hr)
        except QueueFull as exc:
            self.counters.rejected += 1
            raise Overloaded(f"the runtime is busy ({exc}); retry later") from None
        except InferenceError:
            self.counters.errors += 1
            raise
        except asyncio.CancelledError:
            job.control.abandon()  # stops it at the next step if it is running alone
            self.counters.abandoned += 1
            raise
        result.notes.extend(unsupported_notes(req))
        if result.interrupted:
            result.notes.append("interrupted: images are what was generated when /interrupt arrived")
        self.counters.images += len(result.images)
        self.counters.pipeline_seconds += result.pipeline_seconds / max(result.batch.requests, 1)
        if not req.override_settings_restore_afterwards and req.checkpoint_override():
            self.selection.select(job.model)
        return await asyncio.to_thread(response_body, req, job, result, self.settings.png_compress_level)

    async def _second_pass(self, job: GenerationJob, first: GenerationResult, hr: hires.HiresPlan) -> GenerationResult:
        """Hires fix: upscale the first pass's images, then img2img them at the hires size (same seeds)."""
        available = {u.name for u in self.selection.catalog.upscalers}
        work = functools.partial(
            lambda images: [hires.upscale(im, hr, available, self.extras.run_model) for im in images], first.images
        )
        upscaled = await (self.worker.run(work) if hires.uses_model(hr, available) else asyncio.to_thread(work))
        count = job.image_count
        second = dataclasses.replace(
            job,
            task=TaskKind.IMG2IMG,
            width=hr.width,
            height=hr.height,
            steps=hr.steps,
            sampler=hr.sampler,
            denoising_strength=hr.denoising_strength,
            init_images=upscaled,
            prompts=[hr.prompt] * count if hr.prompt is not None else job.prompts,
            negative_prompts=[hr.negative_prompt] * count if hr.negative_prompt is not None else job.negative_prompts,
            notes=[],
            infotext_extra={},
            submitted=time.monotonic(),
            refiner=None,  # the refiner ran in the first pass
            motion=None,
        )
        result: GenerationResult = await self.batcher.submit(second)
        job.denoising_strength = hr.denoising_strength
        job.infotext_extra.update(hr.infotext(job.width, job.height))
        return dataclasses.replace(
            result,
            pipeline_seconds=first.pipeline_seconds + result.pipeline_seconds,
            queue_seconds=first.queue_seconds,
            notes=[*first.notes, *hr.notes, *result.notes],
        )

    async def _run_jobs(self, jobs: list[GenerationJob]) -> list[Outcome]:
        return await self.worker.run(self.runner.run, jobs)

    # -- introspection -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        c = self.counters
        current = self.selection.current
        return {
            "ready": self.ready(),
            "current_model": current.title if current else None,
            "loaded_models": self.selection.cache.names(),
            "batcher": {
                **self.batcher.stats.as_dict(),
                "waiting": self.batcher.waiting,
                "max_batch": self.batcher.max_batch,
            },
            "cache": dict(self.selection.cache.stats.__dict__),
            "requests": c.requests,
            "images": c.images,
            "errors": c.errors,
            "interrupted": c.interrupted,
            "out_of_memory": c.out_of_memory,
            "pipeline_seconds": round(c.pipeline_seconds, 6),
            "warmup_seconds": round(self.warmup_seconds, 3),
            "warmed_up": [list(w) for w in self.warmed_up],
            "healthy": self.health.healthy,
            "consecutive_failures": self.health.consecutive_failures,
            "abandoned": c.abandoned,
            "sampling_steps": self.progress.steps_total,
            "rejected": c.rejected,
            "device": self.device.device,
            "gpu_peak_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
            "dtype": str(self.device.dtype).removeprefix("torch."),
        }
