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
from inference_api.errors import GenerationFailed, TooLargeForDevice, Unhealthy
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
    """Accepts the SD call signature; raises ``error`` for calls of more than ``max_images`` images, the first
    ``times`` such calls (None: always)."""

    def __init__(self, error: BaseException | None = None, max_images: int = 0, times: int | None = None) -> None:
        self.error = error
        self.max_images = max_images
        self.times = times
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
        if self.error is not None and len(prompt) > self.max_images and (self.times is None or self.times > 0):
            self.times = None if self.times is None else self.times - 1
            raise self.error
        for step in range(num_inference_steps):
            callback_on_step_end(self, step, 0, {})
        return _Output([Image.new("RGB", (width, height)) for _ in prompt])


def _engine(tmp_path: Path, pipe: StandInPipeline, **settings: Any) -> tuple[Engine, ModelEntry]:
    engine = Engine(ServerSettings(models_dir=tmp_path, **settings))
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


OOM = torch.OutOfMemoryError("CUDA out of memory")


def test_out_of_memory_alone_is_retried_once_on_an_emptied_cache(tmp_path: Path) -> None:
    pipe = StandInPipeline(OOM, times=1)
    engine, entry = _engine(tmp_path, pipe, cache_size=2)
    other = ModelEntry("other", tmp_path, "diffusers")
    engine.selection.cache.put(other.name, LoadedModel(other, StandInPipeline(), {}))
    engine.selection.cache.get(entry.name)  # the stand-in is the most recently used
    (result,) = engine.runner.run([_job(entry, 1)])
    assert isinstance(result, GenerationResult) and pipe.calls == [1, 1]
    assert engine.selection.cache.names() == [entry.name]  # the other model made room
    assert engine.counters.out_of_memory == 1 and engine.health.consecutive_failures == 0


def test_out_of_memory_alone_on_an_emptied_cache_is_too_large_a_4xx(tmp_path: Path) -> None:
    pipe = StandInPipeline(OOM)
    engine, entry = _engine(tmp_path, pipe)
    job = _job(entry, 1)
    job.width = job.height = 2048
    (result,) = engine.runner.run([job])
    assert isinstance(result, TooLargeForDevice) and status_of(result) == 422
    assert "2048x2048" in result.message and {f.field for f in result.fields} >= {"width", "height"}
    assert pipe.calls == [1, 1] and not engine.progress.busy
    assert engine.health.healthy  # a request too large for the device says nothing about the device


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


def test_health_fails_after_consecutive_failures_and_a_success_resets_the_count(tmp_path: Path) -> None:
    pipe = StandInPipeline(ValueError("bad tensor"), times=2)
    engine, entry = _engine(tmp_path, pipe, unhealthy_after_failures=3)
    for _ in range(2):
        engine.runner.run([_job(entry, 1)])
    assert engine.health.consecutive_failures == 2 and engine.health.healthy
    (ok,) = engine.runner.run([_job(entry, 1)])
    assert isinstance(ok, GenerationResult) and engine.health.consecutive_failures == 0
    pipe.error, pipe.times = ValueError("bad tensor"), None
    for _ in range(3):
        engine.runner.run([_job(entry, 1)])
    assert not engine.health.healthy and "3 generations failed" in engine.health.reason()
    assert engine.not_ready_reason() == engine.health.reason()


def test_a_sticky_device_error_fails_health_at_once_and_refuses_further_work(tmp_path: Path) -> None:
    pipe = StandInPipeline(RuntimeError("CUDA error: an illegal memory access was encountered"), times=1)
    engine, entry = _engine(tmp_path, pipe)
    (result,) = engine.runner.run([_job(entry, 1)])
    assert isinstance(result, Unhealthy) and status_of(result) == 503
    assert not engine.health.healthy and "illegal memory access" in engine.health.reason()
    (refused,) = engine.runner.run([_job(entry, 2)])
    assert isinstance(refused, Unhealthy) and pipe.calls == [1]  # nothing more runs on a broken device


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


def test_compiled_graphs_are_reset_when_a_model_is_evicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resets: list[bool] = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(True))
    engine, _ = _engine(tmp_path, StandInPipeline(), compile=True, cache_size=1)
    other = ModelEntry("other", tmp_path, "diffusers")
    engine.selection.cache.put(other.name, LoadedModel(other, StandInPipeline(), {}))  # evicts the stand-in
    assert engine.selection.cache.names() == ["other"] and resets == [True]


def test_warmup_sizes_parse_from_the_command_line() -> None:
    from inference_api.cli import parser

    args = parser().parse_args(["serve", "--models", "m", "--warmup-size", "512x512", "--warmup-size", "768x512"])
    assert args.warmup_size == [(512, 512), (768, 512)]
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--models", "m", "--warmup-size", "500x512"])
