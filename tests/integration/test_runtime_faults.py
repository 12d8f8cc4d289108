"""Failure containment on the real server: out-of-memory injected inside diffusers, the next request succeeds.

The tiny SD 1.x and SDXL models run in fp16 on the CPU, so the SDXL pipelines take their real fp32 VAE
upcast path (the one that used to leave the VAE in fp32 after a failed decode or encode). The fault is a
``torch.OutOfMemoryError`` raised by the VAE's own ``decode``/``encode`` at the moment diffusers calls it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from inference_api.settings import ServerSettings
from tests.runtime_helpers import (
    TINY,
    TINY_XL,
    RunningServer,
    build_tiny_models,
    one_torch_thread_fixture,  # noqa: F401
    png_b64,
    serve_in_thread,
)

SMALL = {"prompt": "a photo of a cat", "steps": 2, "width": 64, "height": 64, "seed": 21}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = build_tiny_models(tmp_path_factory.mktemp("fault-models"), TINY, TINY_XL)
    settings = ServerSettings(models_dir=root, default_model=TINY, dtype="fp16", cache_size=2, max_batch=1)
    with serve_in_thread(settings) as running:
        yield running


def _request(model: str, stage: str) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {**SMALL, "override_settings": {"sd_model_checkpoint": model}}
    if stage == "encode":
        return "img2img", {**body, "init_images": [png_b64((64, 64), (30, 120, 200))], "denoising_strength": 0.6}
    return "txt2img", body


@contextlib.contextmanager
def _out_of_memory(server: RunningServer, model: str, stage: str, times: int) -> Iterator[None]:
    """Inside the block, the model's VAE ``stage`` raises out-of-memory on its next ``times`` calls."""
    engine = server.app.state.engine
    vae = engine.selection.cache.peek(model).text2img.vae
    real = getattr(vae, stage)
    left = [times]

    def failing(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(*args, **kwargs)

    vae.__dict__[stage] = failing
    try:
        yield
    finally:
        vae.__dict__.pop(stage, None)


def _vae_dtype(server: RunningServer, model: str) -> torch.dtype:
    return server.app.state.engine.selection.cache.peek(model).text2img.vae.dtype


@pytest.mark.parametrize("stage", ["decode", "encode"])
@pytest.mark.parametrize("model", [TINY, TINY_XL])
def test_out_of_memory_inside_the_vae_leaves_the_model_working(server: RunningServer, model: str, stage: str) -> None:
    path, body = _request(model, stage)
    reference = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert reference.status_code == 200, reference.text
    assert _vae_dtype(server, model) == torch.float16

    # Out of memory on the first try and on the retry with an emptied cache: too large for this device.
    with _out_of_memory(server, model, stage, times=2):
        refused = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "too_large_for_device"
    assert "64x64" in refused.json()["error"]["message"]
    assert _vae_dtype(server, model) == torch.float16  # the SDXL upcast was undone

    # The next request succeeds, with the very image the model gave before the fault.
    after = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert after.status_code == 200, after.text
    assert after.json()["images"] == reference.json()["images"]

    # One transient out-of-memory: the retry on the emptied cache gives the same image, at once.
    with _out_of_memory(server, model, stage, times=1):
        retried = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert retried.status_code == 200, retried.text
    assert retried.json()["images"] == reference.json()["images"]
    stats = server.client.get("/stats").json()
    assert stats["healthy"] and stats["out_of_memory"] >= 3
    assert server.client.get("/health").status_code == 200 and server.client.get("/ready").status_code == 200


def test_a_model_that_cannot_be_restored_is_evicted_and_reloaded(server: RunningServer) -> None:
    path, body = _request(TINY, "decode")
    reference = server.client.post(f"/sdapi/v1/{path}", json=body).json()["images"]
    engine = server.app.state.engine
    vae = engine.selection.cache.peek(TINY).text2img.vae

    def corrupting(*args: Any, **kwargs: Any) -> Any:
        # A failure that swaps the attention processors and also breaks the way back.
        from diffusers.models.attention_processor import AttnProcessor

        vae.set_attn_processor(AttnProcessor())
        vae.__dict__["set_attn_processor"] = None
        raise RuntimeError("CUDA error: something went wrong mid-decode")

    vae.__dict__["decode"] = corrupting
    loads = engine.selection.cache.stats.loads
    failed = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "generation_failed"
    assert TINY not in engine.selection.cache.names()  # evicted rather than left half-restored
    after = server.client.post(f"/sdapi/v1/{path}", json=body)
    assert after.status_code == 200 and after.json()["images"] == reference
    assert engine.selection.cache.stats.loads == loads + 1  # reloaded from disk
    assert json.loads(after.json()["info"])["sd_model_name"] == TINY
