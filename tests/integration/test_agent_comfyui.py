"""The agent with RUNTIME_TYPE=comfyui against a fake ComfyUI (HTTP + websocket), AWS on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from contract import QueueMessage, TaskType, cancel_request_update, utcnow
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until, task
from tests.agent_fakes.comfyui import ComfyBehavior, FakeComfyUI
from tests.agent_fakes.fixtures import world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent
from tests.agent_fakes.images import png
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as fake:
        yield fake


def _env(world: AgentWorld, comfy: FakeComfyUI, **extra: str) -> dict[str, str]:
    # The core nodes, plus a video node and the fake's failing node that these tests use.
    allowed = "@default,VHS_VideoCombine,FailingNode"
    return world.agent_env(comfy.base_url, RUNTIME_TYPE="comfyui", COMFYUI_ALLOWED_NODES=allowed, **extra)


def unchecked(task_id: str, nodes: dict[str, Any]) -> str:
    """A pipeline queue message as something other than the API could publish it (no submit checks)."""
    return QueueMessage(id=task_id, runtime="sdruntime", tasktype=TaskType.PIPELINE, content=nodes).model_dump_json()


def workflow(*extra_nodes: tuple[str, dict[str, Any]], batch: int = 1) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_turbo_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a bottle", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": 1, "steps": 4, "model": ["4", 0], "positive": ["6", 0], "latent_image": ["5", 0]},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0], "batch_size": batch},
        },
    }
    nodes.update(dict(extra_nodes))
    return nodes


async def test_pipeline_with_images_a_video_and_an_s3_input(world: AgentWorld, comfy: FakeComfyUI) -> None:
    source = world.put_object("inputs/pose.png", png(5))
    nodes = workflow(
        ("10", {"class_type": "VHS_VideoCombine", "inputs": {"images": ["8", 0], "frame_rate": 8}}),
        ("11", {"class_type": "LoadImage", "inputs": {"image": source}}),
        batch=2,
    )
    task_id = world.submit(task("comfy", "pipeline", nodes, context={"job": 7}))
    async with running_agent(_env(world, comfy)):
        (note,) = await world.await_notifications(1)
    assert note["status"] == "completed" and note["id"] == task_id and note["context"] == {"job": 7}
    assert [u.rsplit(".", 1)[1] for u in note["image_url"]] == ["png", "png", "mp4"]
    s3 = world.client("s3")
    video_key = note["image_url"][2].split("/", 3)[3]
    assert video_key == f"output/{task_id}/{task_id}-3.mp4"
    assert s3.head_object(Bucket=world.bucket, Key=video_key)["ContentType"] == "video/mp4"
    assert world.objects(video_key)[video_key][4:8] == b"ftyp"
    # The s3:// input reached ComfyUI as an uploaded file, and the workflow names that file.
    (uploaded,) = comfy.state.uploads.items()
    assert uploaded[1] == png(5)
    assert comfy.state.prompts[0]["11"]["inputs"]["image"] == uploaded[0]
    out = json.loads(world.objects(f"output/{task_id}/{task_id}.out")[f"output/{task_id}/{task_id}.out"])
    assert out["status"]["status_str"] == "success" and set(out["outputs"]) == {"9", "10"}


async def test_completion_is_found_after_the_websocket_drops(world: AgentWorld) -> None:
    with FakeComfyUI(ComfyBehavior(delay=0.5, drop_socket_once=True)) as comfy:
        world.submit(task("dropped", "pipeline", workflow()))
        async with running_agent(_env(world, comfy)):
            (note,) = await world.await_notifications(1)
    assert note["status"] == "completed" and len(note["image_url"]) == 1
    assert comfy.state.drops == 1 and comfy.state.connections >= 2  # it reconnected


async def test_workflow_errors_fail_the_task(world: AgentWorld, comfy: FakeComfyUI) -> None:
    world.submit(task("broken", "pipeline", workflow(("12", {"class_type": "FailingNode", "inputs": {}}))))
    # The API refuses this at submit; a message published without the API meets the agent's check.
    world.send_raw(unchecked("invalid", workflow(("11", {"class_type": "LoadImage", "inputs": {"image": "x.png"}}))))
    async with running_agent(_env(world, comfy)):
        notes = {n["id"]: n for n in await world.await_notifications(2)}
    assert notes["broken"]["status"] == "failed" and notes["broken"]["error"]["code"] == "runtime_rejected"
    assert "node 12 (FailingNode): this node always fails" in notes["broken"]["error"]["message"]
    # A LoadImage naming a file the task did not supply is refused before ComfyUI sees it.
    assert notes["invalid"]["error"]["code"] == "input_refused"
    assert "task.content.11.inputs.image" in notes["invalid"]["error"]["message"]
    assert len(comfy.state.prompts) == 1


async def test_cancel_interrupts_a_running_workflow(world: AgentWorld) -> None:
    with FakeComfyUI(ComfyBehavior(delay=30)) as comfy:
        task_id = world.submit(task("stop-me", "pipeline", workflow()))
        async with running_agent(_env(world, comfy)):
            await async_wait_until(lambda: comfy.state.prompts, 10, what="prompt queued")
            # A cancel request applies to running tasks (a queued one is simply set cancelled).
            await async_wait_until(lambda: world.status_of(task_id) == "running", 10, what="running")
            world._table().update_item(**cancel_request_update(task_id, utcnow()))
            (note,) = await world.await_notifications(1, timeout=15)
    assert note["status"] == "cancelled" and comfy.state.interrupts >= 1


# Our own fixture always; the replaced sample's real payload too when the workspace provides it.
PIPELINE_FIXTURES = [
    root / "requests-v1alpha2" / "pipeline.json"
    for root in (TEST_FIXTURES, SHARED_FIXTURES)
    if (root / "requests-v1alpha2" / "pipeline.json").exists()
]


@pytest.mark.parametrize("path", PIPELINE_FIXTURES, ids=[p.parts[-3] for p in PIPELINE_FIXTURES])
async def test_the_sample_pipeline_request_runs_unchanged(world: AgentWorld, comfy: FakeComfyUI, path) -> None:
    body = json.loads(path.read_text())
    world.submit(body, via="raw-request", record=False)
    async with running_agent(_env(world, comfy)):
        (note,) = await world.await_notifications(1)
    assert note["status"] == "completed" and note["id"] == body["task"]["metadata"]["id"]
    assert note["image_url"] and all(u.endswith(".png") for u in note["image_url"])


# -- hostile workflows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ComfyUI_9_00000_0.png [output]", "../output/ComfyUI_9_00000_0.png", "other-task-upload.png"]
)
async def test_a_workflow_cannot_load_files_the_task_did_not_supply(
    world: AgentWorld, comfy: FakeComfyUI, name: str
) -> None:
    # Another task's output and another task's upload are on the server; this workflow names them.
    comfy.state.uploads["other-task-upload.png"] = png(1)
    comfy.state.files["ComfyUI_9_00000_0.png"] = png(2)
    world.send_raw(unchecked("snoop", workflow(("11", {"class_type": "LoadImage", "inputs": {"image": name}}))))
    async with running_agent(_env(world, comfy)):
        (note,) = await world.await_notifications(1)
    assert note["status"] == "failed" and note["error"]["code"] == "input_refused"
    assert comfy.state.prompts == [], "the workflow never reached ComfyUI"


async def test_node_types_off_the_allowlist_are_refused(world: AgentWorld, comfy: FakeComfyUI) -> None:
    nodes = workflow(("12", {"class_type": "ExecutePythonCode", "inputs": {"code": "import os"}}))
    world.submit(task("custom", "pipeline", nodes))
    world.submit(task("video", "pipeline", workflow(("10", {"class_type": "VHS_VideoCombine", "inputs": {}}))))
    # The default allowlist: core nodes only.
    async with running_agent(world.agent_env(comfy.base_url, RUNTIME_TYPE="comfyui")):
        notes = {n["id"]: n for n in await world.await_notifications(2)}
    for task_id, node in (("custom", "ExecutePythonCode"), ("video", "VHS_VideoCombine")):
        assert notes[task_id]["error"]["code"] == "node_not_allowed" and node in notes[task_id]["error"]["message"]
    assert comfy.state.prompts == []


async def test_uploads_outputs_and_history_are_cleaned_per_task(world: AgentWorld, tmp_path) -> None:
    source = world.put_object("inputs/pose.png", png(5))
    nodes = workflow(("11", {"class_type": "LoadImage", "inputs": {"image": source}}), batch=2)
    with FakeComfyUI(io_dir=tmp_path) as comfy:
        world.submit(task("tidy", "pipeline", nodes))
        io = {"COMFYUI_INPUT_DIR": str(tmp_path / "input"), "COMFYUI_OUTPUT_DIR": str(tmp_path / "output")}
        async with running_agent(_env(world, comfy, **io)):
            (note,) = await world.await_notifications(1)
        assert note["status"] == "completed" and len(note["image_url"]) == 2
        assert len(comfy.state.uploads) == 1 and len(comfy.state.prompts) == 1  # it did upload and run
        assert comfy.files_on_disk() == {"input": [], "output": []}
        assert comfy.state.history == {}, "the prompt's /history entry is deleted"
