"""Engine failure handling: out-of-memory (with batch splitting), failures, clean error bodies.

The pipeline is a stand-in that raises on demand (a real OOM needs a GPU); real pipelines run in
tests/integration/test_runtime_api.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from inference_api.architectures import SD_NOISE_SCHEDULE
from inference_api.catalog import ModelEntry
from inference_api.engine import Engine
from inference_api.errors import GenerationFailed, OutOfMemory
from inference_api.generation import GenerationJob, GenerationResult
from inference_api.http_errors import status_of
from inference_api.loading import LoadedModel
from inference_api.samplers import choose
from inference_api.schedules import sigmas_for
from inference_api.settings import ServerSettings
from inference_api.tasks import TaskKind
from tests.runtime_helpers import serve_in_thread


class _Output:
    def __init__(self, images: list[Image.Image]) -> None:
        self.images = images


class StandInPipeline:
    """Accepts the SD call signature; fails with ``error`` when asked for more than ``max_images``."""

    def __init__(self, error: BaseException | None = None, max_images: int = 0) -> None:
        self.error = error
        self.max_images = max_images
        self.scheduler: Any = None
        self.calls: list[int] = []

    def __call__(
        self,
        prompt: list[str],
        negative_prompt: list[str] | None = None,
        num_inference_steps: int = 1,
        guidance_scale: float = 7.0,
        width: int = 64,
        height: int = 64,
        generator: Any = None,
        num_images_per_prompt: int = 1,
        output_type: str = "pil",
        callback_on_step_end: Any = None,
    ) -> _Output:
        self.calls.append(len(prompt))
        if self.error is not None and len(prompt) > self.max_images:
            raise self.error
        for step in range(num_inference_steps):
            callback_on_step_end(self, step, 0, {})
        return _Output([Image.new("RGB", (width, height)) for _ in prompt])


def _engine(tmp_path: Path, pipe: StandInPipeline) -> tuple[Engine, ModelEntry]:
    engine = Engine(ServerSettings(models_dir=tmp_path))
    entry = ModelEntry("stand-in", tmp_path, "diffusers")
    scheduler_config = {"_class_name": "PNDMScheduler", **SD_NOISE_SCHEDULE}
    engine.selection.cache.put(entry.name, LoadedModel(entry, pipe, scheduler_config))
    return engine, entry


def _job(entry: ModelEntry, seed: int) -> GenerationJob:
    return GenerationJob(
        task=TaskKind.TXT2IMG,
        model=entry,
        prompts=["p"],
        negative_prompts=[""],
        seeds=[seed],
        width=64,
        height=64,
        steps=2,
        cfg_scale=7.0,
        sampler=choose("Euler"),
    )


def test_out_of_memory_is_a_clean_503(tmp_path: Path) -> None:
    pipe = StandInPipeline(torch.OutOfMemoryError("CUDA out of memory"))
    engine, entry = _engine(tmp_path, pipe)
    (result,) = engine.runner.run([_job(entry, 1)])
    assert isinstance(result, OutOfMemory) and status_of(result) == 503
    assert engine.counters.out_of_memory == 1 and not engine.progress.busy


def test_a_merged_batch_that_runs_out_of_memory_is_retried_one_by_one(tmp_path: Path) -> None:
    pipe = StandInPipeline(RuntimeError("CUDA error: out of memory"), max_images=1)
    engine, entry = _engine(tmp_path, pipe)
    results = engine.runner.run([_job(entry, 1), _job(entry, 2)])
    assert all(isinstance(r, GenerationResult) for r in results)
    assert pipe.calls == [2, 1, 1]


def test_other_failures_are_500_without_a_traceback(tmp_path: Path) -> None:
    engine, entry = _engine(tmp_path, StandInPipeline(ValueError("bad tensor")))
    (result,) = engine.runner.run([_job(entry, 1)])
    assert isinstance(result, GenerationFailed) and status_of(result) == 500
    assert "Traceback" not in result.message and "bad tensor" in result.message


def test_sampler_is_swapped_onto_the_pipeline(tmp_path: Path) -> None:
    pipe = StandInPipeline()
    engine, entry = _engine(tmp_path, pipe)
    job = _job(entry, 1)
    job.sampler = choose("DPM++ 2M Karras")
    (result,) = engine.runner.run([job])
    assert isinstance(result, GenerationResult)
    assert isinstance(pipe.scheduler, diffusers.DPMSolverMultistepScheduler)
    pipe.scheduler.set_timesteps(10)
    expected = sigmas_for("Karras", "DPM++ 2M", 10, pipe.scheduler.config, xl=False)
    assert np.allclose(pipe.scheduler.sigmas.numpy(), expected, rtol=1e-5)


def test_oversized_body_is_413_and_server_stays_up(tmp_path: Path) -> None:
    settings = ServerSettings(models_dir=tmp_path, max_body_bytes=1024)
    with serve_in_thread(settings, ready=False) as server:
        response = server.client.post("/sdapi/v1/txt2img", content=b"{" + b" " * 4096 + b"}")
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        assert server.client.get("/health").status_code == 200


@pytest.mark.parametrize("value", ["x", 0, 13, True])
def test_options_validate_clip_skip(tmp_path: Path, value: object) -> None:
    with serve_in_thread(ServerSettings(models_dir=tmp_path), ready=False) as server:
        response = server.client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": value})
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "CLIP_stop_at_last_layers"
