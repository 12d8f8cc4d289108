"""Running a batch of jobs on the worker thread: domain errors out, and the out-of-memory fallback.

A merged batch that runs out of memory is split and each request retried alone.
"""

from __future__ import annotations

import itertools
import logging

from inference_api.containment import is_out_of_memory, release_memory
from inference_api.errors import GenerationFailed, InferenceError, JobInterrupted, OutOfMemory
from inference_api.generation import GenerationJob, GenerationResult, plan_calls, run_batch
from inference_api.metrics import Counters
from inference_api.progress import Interrupted, Progress
from inference_api.selection import ModelSelection

log = logging.getLogger(__name__)

Outcome = GenerationResult | BaseException


class BatchRunner:
    def __init__(self, selection: ModelSelection, progress: Progress, counters: Counters) -> None:
        self._selection = selection
        self._progress = progress
        self._counters = counters
        self._batch_ids = itertools.count(1)

    def run(self, jobs: list[GenerationJob]) -> list[Outcome]:
        """One outcome per job, in order. Worker thread only."""
        try:
            return list(self._run_once(jobs))
        except Interrupted:
            self._counters.interrupted += len(jobs)
            return [JobInterrupted("the job was interrupted before it finished") for _ in jobs]
        except InferenceError as exc:
            return [exc for _ in jobs]
        except Exception as exc:
            if not is_out_of_memory(exc):
                log.exception("generation failed")
                error = GenerationFailed(f"generation failed: {type(exc).__name__}: {exc}"[:500])
                return [error for _ in jobs]
            release_memory()
            if len(jobs) == 1:
                self._counters.out_of_memory += 1
                return [OutOfMemory("the accelerator ran out of memory for this job; retry later or ask less")]
        # A merged batch that ran out of memory gets a second chance one request at a time.
        results: list[Outcome] = []
        for job in jobs:
            results += self.run([job])
        return results

    def _run_once(self, jobs: list[GenerationJob]) -> list[GenerationResult]:
        self._progress.begin(jobs[0].task, job_count=len(plan_calls(jobs)), steps=jobs[0].steps)
        try:
            loaded = self._selection.load_in_worker(jobs[0].model)
            return run_batch(loaded, jobs, self._progress, next(self._batch_ids), self._selection.device.device)
        finally:
            self._progress.end()
