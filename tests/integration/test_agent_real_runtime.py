"""The agent driving our real runtime (``inference_api`` with tiny models on the CPU), not a fake.

- Micro-batching end to end: with two calls in flight the runtime merges them into one batch, and
  the images are the ones the same tasks give unmerged (up to float rounding, at most 2/255).
- Model switching through ``/options`` with two calls in flight: every task runs on the checkpoint
  it names, never on the one a queued neighbour switches to.
- The second signal aborts the calls at the runtime and hands every message back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference_api.settings import ServerSettings
from tests.agent_fakes.aws_world import AgentWorld, task, wait_until
from tests.agent_fakes.harness import AgentProcess, running_agent
from tests.conftest import TEST_FIXTURES
from tests.runtime_helpers import (
    TINY,
    TINY_B,
    RunningServer,
    build_tiny_models,
    one_torch_thread_fixture,  # noqa: F401
    serve_in_thread,
)

pytestmark = pytest.mark.timeout(600)

SMALL = {"steps": 3, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("agent-runtime-models"), TINY, TINY_B)


def _ours(world: AgentWorld, server: RunningServer, **env: str) -> dict[str, str]:
    return world.agent_env(f"{server.url}/sdapi/v1/", RUNTIME_TYPE="diffusers", **env)


def _pixels(world: AgentWorld, task_id: str) -> np.ndarray:
    (key,) = [k for k in world.objects(f"output/{task_id}/") if k.endswith(".png")]
    return np.asarray(Image.open(io.BytesIO(world.objects(key)[key])).convert("RGB"))


def _document(world: AgentWorld, task_id: str) -> dict[str, Any]:
    key = f"output/{task_id}/{task_id}.out"
    return dict(json.loads(world.objects(key)[key]))


PROMPTS = [("a red lighthouse", 11), ("a blue boat", 22), ("a green hill", 33), ("a grey cat", 44)]


def _submit_all(world: AgentWorld, prefix: str) -> list[str]:
    return [
        world.submit(task(f"{prefix}{n}", content={"prompt": prompt, "seed": seed, **SMALL}))
        for n, (prompt, seed) in enumerate(PROMPTS)
    ]


async def test_two_calls_in_flight_merge_into_one_batch_with_the_same_images(aws_env, models: Path) -> None:
    world = AgentWorld(aws_env.endpoint, visibility_timeout=60).create()
    # A batch leaves as soon as it holds two images, so merging needs no timing assumption beyond
    # "the second request arrives within the (generous) window".
    merging = ServerSettings(models_dir=models, max_batch=2, batch_window_ms=60_000)
    with serve_in_thread(merging) as server:
        merged_ids = _submit_all(world, "merged")
        async with running_agent(_ours(world, server, RUNTIME_INFLIGHT="2")):
            await world.await_notifications(len(merged_ids), timeout=300)
        stats = server.client.get("/stats").json()["batcher"]
    assert stats["merged_batches"] >= 1 and stats["merged_requests"] >= 2, stats
    # Each task's own record says it shared its pipeline call.
    assert any(_document(world, i)["info"]["batch"]["requests"] == 2 for i in merged_ids)

    alone = ServerSettings(models_dir=models, max_batch=1)
    with serve_in_thread(alone) as server:
        single_ids = _submit_all(world, "single")
        async with running_agent(_ours(world, server, RUNTIME_INFLIGHT="1")):
            await world.await_notifications(len(merged_ids) + len(single_ids), timeout=300)
        assert server.client.get("/stats").json()["batcher"]["merged_batches"] == 0
    assert all(n["status"] == "completed" for n in world.notifications())
    for merged, single in zip(merged_ids, single_ids, strict=True):
        # The same image up to float rounding of a batch-2 call (as the runtime's own batching test).
        diff = np.abs(_pixels(world, merged).astype(np.int16) - _pixels(world, single).astype(np.int16))
        assert diff.max() <= 2, (merged, single, int(diff.max()))


async def test_each_task_runs_on_the_model_it_names_with_two_calls_in_flight(aws_env, models: Path) -> None:
    world = AgentWorld(aws_env.endpoint, visibility_timeout=60).create()
    wanted = [TINY, TINY_B, TINY_B, TINY, TINY_B]
    ids = [
        world.submit(
            task(
                f"on{n}",
                content={"prompt": "a tree", "seed": n, **SMALL, "override_settings": {"sd_model_checkpoint": m}},
            )
        )
        for n, m in enumerate(wanted)
    ]
    with serve_in_thread(ServerSettings(models_dir=models, default_model=TINY)) as server:
        env = _ours(world, server, RUNTIME_INFLIGHT="2", DYNAMIC_SD_MODEL="true", PREFETCH="3")
        async with running_agent(env):
            await world.await_notifications(len(ids), timeout=300)
        final = server.client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
    assert all(n["status"] == "completed" for n in world.notifications())
    for task_id, model in zip(ids, wanted, strict=True):
        info = _document(world, task_id)["info"]
        assert info["sd_model_name"] == model, (task_id, info["sd_model_name"])
    assert final.split(" [")[0] in {TINY, TINY_B}


@pytest.fixture
def slow_runtime(models: Path) -> Iterator[RunningServer]:
    with serve_in_thread(ServerSettings(models_dir=models, default_model=TINY)) as server:
        yield server


def test_a_second_signal_aborts_the_calls_at_our_runtime_and_hands_them_back(
    aws_env, slow_runtime: RunningServer, tmp_path: Path
) -> None:
    world = AgentWorld(aws_env.endpoint, visibility_timeout=120).create()
    # The first runs long enough to signal twice; the second, queued behind it, is short: our runtime
    # still runs a request whose client went away, after the interrupted one.
    long = {"prompt": "a long one", "steps": 150, "width": 512, "height": 512, "seed": 1}
    ids = [world.submit(task("abort-long", content=long))]
    env = _ours(world, slow_runtime, RUNTIME_INFLIGHT="2")
    agent = AgentProcess(env, tmp_path / "agent.log").start()
    try:
        agent.wait_ready(60)
        wait_until(lambda: world.status_of(ids[0]) == "running", 60, what="the long one at the runtime")
        ids.append(world.submit(task("abort-short", content={"prompt": "a short one", "seed": 2, **SMALL})))
        wait_until(lambda: [world.status_of(i) for i in ids] == ["running", "running"], 60, what="both at the runtime")
        wait_until(lambda: slow_runtime.client.get("/sdapi/v1/progress").json()["progress"] > 0, 60, what="steps")
        agent.abort(drain_timeout=30, exit_timeout=60)
    finally:
        agent.stop()
    assert world.queue_counts() == (2, 0)  # both visible again at once, for the next pod
    assert world.notifications() == []
    # The runtime stopped the running call at its next step (its counters move when the call ends).
    wait_until(lambda: slow_runtime.client.get("/stats").json()["interrupted"] >= 1, 120, what="interrupted")


async def test_the_sample_text_to_video_payload_completes_with_a_gif(aws_env, models: Path) -> None:
    from contract import legacy_request, parse_legacy_request
    from inference_api.animatediff import build_tiny_motion_module

    build_tiny_motion_module(models / TINY, models / "AnimateDiff" / "mm_sd15_v3", seed=1)
    world = AgentWorld(aws_env.endpoint, visibility_timeout=60).create()
    # The sample's t2v body as its client posts it, scaled down: 64 px, 2 steps, 3 frames, our tiny model.
    body = json.loads((TEST_FIXTURES / "requests-v1alpha1" / "t2v.json").read_text())
    scripts = body["alwayson_scripts"]
    scripts.update(id_task="video-1", sd_model_checkpoint=TINY)
    scripts["AnimateDiff"]["args"][0].update(video_length=3)
    body.update(steps=2, width=64, height=64, batch_size=3)
    with serve_in_thread(ServerSettings(models_dir=models, default_model=TINY)) as server:
        # What POST /v1alpha1/ does with it: the legacy body made an ordinary task for this runtime.
        request = legacy_request(parse_legacy_request(body), world.runtime)
        world.submit(request.model_dump(mode="json", exclude_none=True))
        async with running_agent(_ours(world, server)):
            (note,) = await world.await_notifications(1, timeout=300)
    assert note["status"] == "completed", json.dumps(note)[:3000]
    prefix = f"{scripts['save_dir']}/video-1/"
    (key,) = [k for k in world.objects(prefix) if not k.endswith((".out", ".json"))]
    assert key == f"{prefix}video-1-1.gif"
    head = world.client("s3").head_object(Bucket=world.bucket, Key=key)
    assert head["ContentType"] == "image/gif"
    gif = Image.open(io.BytesIO(world.objects(key)[key]))
    assert gif.format == "GIF" and gif.n_frames == 3
    assert any(url.endswith("video-1-1.gif") for url in _image_urls(note))


def _image_urls(note: dict[str, Any]) -> list[str]:
    urls = note.get("image_url") or []
    return [urls] if isinstance(urls, str) else list(urls)
