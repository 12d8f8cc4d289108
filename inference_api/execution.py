"""Running a batch of jobs on the worker thread: failure containment and the out-of-memory fallback.

- Any failure leaves the model as it was loaded (dtypes, devices, attention processors), else it is
  evicted and reloaded by the next request (see :meth:`ModelSelection.restore_or_evict`).
- A merged batch that runs out of memory is split and each request retried alone.
- A request that runs out of memory alone is retried once with every other model evicted and the
  allocator's cache emptied; if it still does not fit, it is too large for this device (a 4xx).
- A sticky device error (illegal memory access, device-side assert) marks the process unhealthy.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from contract import FieldIssue
from inference_api.containment import is_out_of_memory, is_sticky_device_error, release_memory
from inference_api.errors import (
    ClientGone,
    GenerationFailed,
    InferenceError,
    ModelLoadFailed,
    TooLargeForDevice,
    Unhealthy,
)
from inference_api.generation import GenerationJob, GenerationResult, plan_calls, prompt_chunks, run_batch
from inference_api.health import Health
from inference_api.metrics import Counters
from inference_api.progress import Progress
from inference_api.selection import ModelSelection
from inference_api.tasks import TaskKind

log = logging.getLogger(__name__)

Outcome = GenerationResult | BaseException


class BatchRunner:
    def __init__(self, selection: ModelSelection, progress: Progress, counters: Counters, health: Health) -> None:
        self._selection = selection
        self._progress = progress
        self._counters = counters
        self._health = health
        self._batch_ids = itertools.count(1)

    def run(self, jobs: list[GenerationJob]) -> list[Outcome]:
        """One outcome per job, in order. Worker thread only."""
        live = [job for job in jobs if not job.control.abandoned]
        if not live:
            return [_abandoned() for _ in jobs]
        outcomes = dict(zip(map(id, live), self._run(live), strict=True))
        results = [outcomes.get(id(job)) or _abandoned() for job in jobs]
        for outcome in results:
            if isinstance(outcome, GenerationResult):
                self._health.success()
                self._counters.interrupted += outcome.interrupted
            elif not isinstance(outcome, InferenceError) or _counts_as_failure(outcome):
                self._health.failure()
        return results

    def _run(self, jobs: list[GenerationJob], *, retry_alone: bool = True) -> list[Outcome]:
        if not self._health.healthy and self._health.sticky_error:
            return [Unhealthy(self._health.reason()) for _ in jobs]
        try:
            return list(self._run_once(jobs))
        except InferenceError as exc:
            self._selection.restore_or_evict(jobs[0].model)
            return [exc for _ in jobs]
        except Exception as exc:
            failure = exc
        if is_sticky_device_error(failure):
            log.error("sticky device error: %s; /health now fails", failure)
            self._health.device_lost(failure)
            return [Unhealthy(self._health.reason()) for _ in jobs]
        self._selection.restore_or_evict(jobs[0].model)
        if not is_out_of_memory(failure):
            log.error("generation failed", exc_info=failure)
            error = GenerationFailed(f"generation failed: {type(failure).__name__}: {failure}"[:500])
            return [error for _ in jobs]
        self._counters.out_of_memory += 1
        release_memory()
        if len(jobs) > 1:
            # A merged batch that ran out of memory gets a second chance one request at a time.
            log.warning("a merged batch of %d requests ran out of memory; running them one by one", len(jobs))
            return [outcome for job in jobs for outcome in self._run([job])]
        if retry_alone:
            evicted = self._selection.evict_others(jobs[0].model)
            release_memory()
            log.warning("out of memory alone; retrying once on an emptied cache (%d models evicted)", evicted)
            return self._run(jobs, retry_alone=False)
        return [_too_large(jobs[0])]

    def _run_once(self, jobs: list[GenerationJob]) -> list[GenerationResult]:
        lead = jobs[0]
        self._progress.begin(
            lead.task, job_count=len(plan_calls(jobs)), steps=lead.steps, on_interrupt=lead.control.interrupt
        )
        try:
            loaded = self._selection.load_in_worker(lead.model)
            device = self._selection.device.device
            results: dict[int, GenerationResult] = {}
            for group in _by_prompt_chunks(loaded.text2img, jobs):
                outcome = run_batch(
                    loaded, group, self._progress, next(self._batch_ids), device, self._selection.load_in_worker
                )
                results.update(zip(map(id, group), outcome, strict=True))
            return [results[id(job)] for job in jobs]
        finally:
            self._progress.end()


def _by_prompt_chunks(pipe: Any, jobs: list[GenerationJob]) -> list[list[GenerationJob]]:
    """Jobs that encode to the same number of CLIP chunks, in order.

    The batch key holds the chunk count when the model was loaded at submission; requests that arrived
    before it was (first load, after an eviction) are checked here, so a companion never pads another's
    prompt to more chunks (which would change its image).
    """
    if len(jobs) == 1:
        return [jobs]
    groups: dict[int, list[GenerationJob]] = {}
    for job in jobs:
        job.prompt_chunks = prompt_chunks(pipe, [*job.prompts[:1], *job.negative_prompts[:1]])
        groups.setdefault(job.prompt_chunks, []).append(job)
    return list(groups.values())


def _abandoned() -> InferenceError:
    return ClientGone("the client disconnected before the job ran")


def _counts_as_failure(error: InferenceError) -> bool:
    # Deterministic refusals say nothing about the process's health; server-side failures do.
    return isinstance(error, GenerationFailed | Unhealthy | ModelLoadFailed)


def _too_large(job: GenerationJob) -> TooLargeForDevice:
    size = f"{job.width}x{job.height} x {job.image_count} image(s)"
    if job.task is not TaskKind.TXT2IMG:
        size += f" ({job.task})"
    message = f"{size} does not fit in this accelerator's memory even alone; ask for fewer or smaller images"
    fields = [FieldIssue(f, "device_memory", message) for f in ("width", "height", "batch_size")]
    return TooLargeForDevice(message, fields)
