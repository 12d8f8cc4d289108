"""Readiness, model (un)loading and micro-batching, on servers run in a thread of the test process."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference_api.settings import ServerSettings
from inference_api.tiny import build_tiny_model
from tests.runtime_helpers import (
    TINY,
    RunningServer,
    build_tiny_models,
    decode_png,
    one_torch_thread_fixture,  # noqa: F401
    serve_in_thread,
    wait_until,
)

SMALL = {"steps": 3, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("lifecycle-models"), TINY)


def test_ready_only_once_a_model_is_loaded(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with serve_in_thread(ServerSettings(models_dir=models), ready=False) as server:
        assert server.client.get("/health").status_code == 200
        not_ready = server.client.get("/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]["code"] == "not_ready"
        refused = server.client.post("/sdapi/v1/txt2img", json=SMALL)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
        # The model arrives (as on a freshly mounted bucket); a refresh finds and preloads it.
        build_tiny_model(models, name=TINY)
        assert server.client.get("/ready").status_code == 503
        assert server.client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
        wait_until(lambda: server.client.get("/ready").status_code == 200, what="/ready after refresh")
        assert server.client.get("/ready").json()["model"] == TINY
        assert server.client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200


def test_unload_then_reload_on_demand(models: Path) -> None:
    with serve_in_thread(ServerSettings(models_dir=models)) as server:
        assert server.client.post("/sdapi/v1/unload-checkpoint").status_code == 200
        assert server.client.get("/ready").status_code == 503
        assert server.client.get("/stats").json()["loaded_models"] == []
        # A request after an unload loads the selected model again rather than failing.
        assert server.client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200
        assert server.client.get("/ready").status_code == 200
        assert server.client.post("/sdapi/v1/unload-checkpoint").status_code == 200
        assert server.client.post("/sdapi/v1/reload-checkpoint").status_code == 200
        assert server.client.get("/ready").status_code == 200


def test_lazy_start_without_preload_is_ready_because_a_request_would_run(models: Path) -> None:
    # The queue agent waits for /ready before it sends anything: with --no-preload a request sent now
    # runs (it loads the model), so /ready says yes at once, and that it has not loaded it yet.
    with serve_in_thread(ServerSettings(models_dir=models, preload=False), ready=False) as server:
        ready = server.client.get("/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "model": TINY, "loaded": False}
        assert server.client.get("/stats").json()["loaded_models"] == []
        assert server.client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200
        assert server.client.get("/ready").json()["loaded"] is True


def test_lazy_start_is_not_ready_without_a_model(tmp_path: Path) -> None:
    with serve_in_thread(ServerSettings(models_dir=tmp_path, preload=False), ready=False) as server:
        response = server.client.get("/ready")
        assert response.status_code == 503 and "no model" in response.json()["error"]["message"]
        assert response.headers["Retry-After"] == "5"


def _concurrently(server: RunningServer, bodies: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = [None] * len(bodies)

    def call(i: int) -> None:
        results[i] = server.client.post("/sdapi/v1/txt2img", json=bodies[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_micro_batching_merges_concurrent_compatible_requests(models: Path) -> None:
    # The window is only an upper bound: a batch leaves as soon as it holds max_batch images, so two
    # concurrent requests merge without any timing assumption short of "both arrive within 60 s".
    settings = ServerSettings(models_dir=models, max_batch=2, batch_window_ms=60_000)
    with serve_in_thread(settings) as server:
        cat = {**SMALL, "prompt": "a cat", "seed": 11}
        dog = {**SMALL, "prompt": "a dog", "seed": 22, "negative_prompt": "dark"}
        first = _concurrently(server, [cat, dog])
        assert [r.status_code for r in first] == [200, 200]
        infos = [json.loads(r.json()["info"]) for r in first]
        assert infos[0]["batch"]["id"] == infos[1]["batch"]["id"]
        assert [i["batch"]["requests"] for i in infos] == [2, 2]
        # Each request keeps its own prompt and seed inside the shared call.
        assert (infos[0]["prompt"], infos[0]["seed"]) == ("a cat", 11)
        assert (infos[1]["prompt"], infos[1]["seed"], infos[1]["negative_prompt"]) == ("a dog", 22, "dark")
        stats = server.client.get("/stats").json()["batcher"]
        assert stats["merged_batches"] == 1 and stats["merged_requests"] == 2

        # The cat image does not depend on its batch companion: same seed and prompt, same image.
        second = _concurrently(server, [cat, {**SMALL, "prompt": "a wizard", "seed": 99}])
        a = np.asarray(decode_png(first[0].json()["images"][0]), dtype=np.int16)
        b = np.asarray(decode_png(second[0].json()["images"][0]), dtype=np.int16)
        assert np.abs(a - b).max() <= 2
        assert server.client.get("/stats").json()["batcher"]["merged_batches"] == 2

        # A request that fills a batch by itself leaves at once instead of waiting for the window.
        full = server.client.post("/sdapi/v1/txt2img", json={**SMALL, "batch_size": 2, "steps": 4})
        assert full.status_code == 200
        assert json.loads(full.json()["info"])["batch"]["requests"] == 1


def test_missing_default_model_is_reported_by_ready(models: Path) -> None:
    with serve_in_thread(ServerSettings(models_dir=models, default_model="gone.safetensors"), ready=False) as server:
        response = server.client.get("/ready")
        assert response.status_code == 503 and "gone.safetensors" in response.json()["error"]["message"]
        # Selecting an existing model makes the server ready.
        assert server.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": TINY}).status_code == 200
        assert server.client.get("/ready").status_code == 200


def test_mixed_concurrent_requests_each_get_their_own_images(models: Path) -> None:
    settings = ServerSettings(models_dir=models, max_batch=4, batch_window_ms=200)
    with serve_in_thread(settings) as server:
        bodies: list[dict[str, Any]] = [
            {**SMALL, "prompt": f"prompt {i}", "seed": 100 + i, "steps": 3 if i % 2 else 4, "batch_size": 1 + i % 2}
            for i in range(6)
        ]
        responses = _concurrently(server, bodies)
        assert [r.status_code for r in responses] == [200] * 6
        for body, response in zip(bodies, responses, strict=True):
            info = json.loads(response.json()["info"])
            assert info["all_prompts"] == [body["prompt"]] * body["batch_size"]
            assert info["all_seeds"] == [body["seed"] + k for k in range(body["batch_size"])]
            assert info["steps"] == body["steps"] and len(response.json()["images"]) == body["batch_size"]
        stats = server.client.get("/stats").json()
        assert stats["batcher"]["requests"] == 6 and stats["images"] == 9
        assert stats["batcher"]["largest_batch"] <= 4


def test_warmup_generates_every_bucket_before_ready(models: Path) -> None:
    settings = ServerSettings(models_dir=models, max_batch=2, warmup=True, warmup_sizes=((64, 64), (64, 96)))
    with serve_in_thread(settings, ready=False) as server:
        # Whenever /ready first says yes, every configured size and batch size has been generated.
        wait_until(lambda: server.client.get("/ready").status_code == 200, what="/ready after warm-up")
        stats = server.client.get("/stats").json()
        assert stats["warmed_up"] == [[64, 64, 1], [64, 64, 2], [64, 96, 1], [64, 96, 2]]
        assert stats["warmup_seconds"] > 0
        assert server.client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200


def test_every_request_gives_the_same_image_alone_and_merged(models: Path) -> None:
    words = "a photo of a cat in a detailed fantasy landscape".split()
    long_prompt = " ".join(words * 12)  # two CLIP chunks: never merged with one-chunk prompts
    bodies: list[dict[str, Any]] = [
        {**SMALL, "prompt": "a cat", "seed": 1},
        {**SMALL, "prompt": long_prompt, "seed": 2},
        {**SMALL, "prompt": "a dog", "negative_prompt": "dark", "seed": 3},
        {**SMALL, "prompt": long_prompt + " at night", "negative_prompt": "blurry", "seed": 4},
    ]
    with serve_in_thread(ServerSettings(models_dir=models, max_batch=1)) as server:
        alone = [server.client.post("/sdapi/v1/txt2img", json=b) for b in bodies]
    assert [r.status_code for r in alone] == [200] * 4
    # A 60 s window with room for two: each request waits for one companion of its own kind.
    with serve_in_thread(ServerSettings(models_dir=models, max_batch=2, batch_window_ms=60_000)) as server:
        merged = _concurrently(server, bodies)
    assert [r.status_code for r in merged] == [200] * 4
    batches = [json.loads(r.json()["info"])["batch"] for r in merged]
    assert [b["requests"] for b in batches] == [2, 2, 2, 2]
    assert batches[0]["id"] == batches[2]["id"] != batches[1]["id"] == batches[3]["id"]
    for single, shared in zip(alone, merged, strict=True):
        a = np.asarray(decode_png(single.json()["images"][0]), dtype=np.int16)
        b = np.asarray(decode_png(shared.json()["images"][0]), dtype=np.int16)
        assert np.abs(a - b).max() <= 2


def test_requests_merged_before_the_model_loaded_still_keep_their_own_images(models: Path) -> None:
    # Without preloading, the tokenizer is unknown when the first requests queue: a short and a long prompt
    # share a batch key, and the worker splits them by chunk count once the model is loaded.
    long_prompt = " ".join("a photo of a cat in a detailed fantasy landscape".split() * 12)
    bodies: list[dict[str, Any]] = [
        {**SMALL, "prompt": "a cat", "seed": 1},
        {**SMALL, "prompt": long_prompt, "seed": 2},
    ]
    with serve_in_thread(ServerSettings(models_dir=models, max_batch=1)) as server:
        alone = [server.client.post("/sdapi/v1/txt2img", json=b).json()["images"][0] for b in bodies]
    settings = ServerSettings(models_dir=models, max_batch=2, batch_window_ms=60_000, preload=False)
    with serve_in_thread(settings) as server:
        merged = _concurrently(server, bodies)
        assert server.client.get("/stats").json()["batcher"]["merged_batches"] == 1  # one batch in the batcher
    assert [r.status_code for r in merged] == [200, 200]
    infos = [json.loads(r.json()["info"])["batch"] for r in merged]
    assert infos[0]["id"] != infos[1]["id"] and [i["requests"] for i in infos] == [1, 1]  # two pipeline calls
    for single, shared in zip(alone, merged, strict=True):
        a = np.asarray(decode_png(single), dtype=np.int16)
        b = np.asarray(decode_png(shared.json()["images"][0]), dtype=np.int16)
        assert np.abs(a - b).max() <= 2
