"""What a task may make its runtime do. It may not change the runtime's settings for the tasks after it:
``override_settings`` keys are an allowlist (400 at submit, refused again by the agent for messages that did
not come through the API), and ``override_settings_restore_afterwards`` is always true at the runtime. A
ComfyUI workflow may not name files already on the server (400 at submit; the agent checks again)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from task_api import app

from contract import QueueMessage, TaskType
from local_stack.gateway import LocalGateway
from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import AgentWorld
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent
from tests.integration import test_api_support as support
from tests.integration.test_api_support import ApiStack

api_stack = support.api_stack
pytestmark = pytest.mark.timeout(120)
KEY = {"x-api-key": "k"}


@pytest.fixture
def client(api_stack: ApiStack) -> Iterator[httpx.Client]:
    with LocalGateway("k", app.handler) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as c:
        yield c


def t2i(task_id: str, overrides: dict) -> dict:
    metadata = {"id": task_id, "runtime": "sdruntime", "tasktype": "text-to-image"}
    return {"task": {"metadata": metadata, "content": {"prompt": "p", "override_settings": overrides}}}


def test_options_outside_the_allowlist_are_refused_at_submit(client: httpx.Client, api_stack: ApiStack) -> None:
    # Pointing the runtime's output folder elsewhere, or turning its URL fetching back on, for everyone after.
    answer = client.post(
        "/tasks", json=t2i("o1", {"outdir_samples": "/tmp/x", "api_enable_requests": True}), headers=KEY
    )
    assert answer.status_code == 400
    [issue] = answer.json()["error"]["fields"]
    assert issue["field"] == "task.content.override_settings" and issue["rule"] == "allowed_keys"
    assert "api_enable_requests, outdir_samples" in issue["message"]
    assert api_stack.item("o1") is None
    allowed = {"sd_model_checkpoint": "m.safetensors", "CLIP_stop_at_last_layers": 2}
    assert client.post("/tasks", json=t2i("o2", allowed), headers=KEY).status_code == 202


def test_a_workflow_naming_server_files_is_refused_at_submit(client: httpx.Client, api_stack: ApiStack) -> None:
    nodes = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "ComfyUI_00001_.png [output]"}},
        "2": {"class_type": "LoadImageMask", "inputs": {"image": "someone-elses-upload.png", "channel": "alpha"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "https://example.com/mine.png"}},
    }
    body = {"task": {"metadata": {"id": "c1", "runtime": "comfyruntime", "tasktype": "pipeline"}, "content": nodes}}
    answer = client.post("/tasks", json=body, headers=KEY)
    assert answer.status_code == 400
    fields = {(f["field"], f["rule"]) for f in answer.json()["error"]["fields"]}
    assert fields == {("task.content.1.inputs.image", "image_ref"), ("task.content.2.inputs.image", "image_ref")}


async def test_the_agent_restores_settings_and_refuses_foreign_options(world: AgentWorld, a1111: FakeA1111) -> None:
    def message(task_id: str, content: dict) -> str:
        return QueueMessage(
            id=task_id, runtime="sdruntime", tasktype=TaskType.TEXT_TO_IMAGE, content=content
        ).model_dump_json()

    # Published straight to the queue (not through the API): the agent checks again.
    world.send_raw(
        message("sticky", {"prompt": "p", "override_settings": {"CLIP_stop_at_last_layers": 2},
                           "override_settings_restore_afterwards": False})
    )  # fmt: skip
    world.send_raw(message("foreign", {"prompt": "p", "override_settings": {"outdir_samples": "/tmp/x"}}))
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = {n["id"]: n for n in await world.await_notifications(2)}
    assert notes["sticky"]["status"] == "completed"
    assert notes["foreign"]["status"] == "failed" and notes["foreign"]["error"]["code"] == "input_refused"
    [call] = [c for c in a1111.finished_calls(200) if c.endpoint == "txt2img"]
    assert call.payload["override_settings_restore_afterwards"] is True
    assert call.payload["override_settings"] == {"CLIP_stop_at_last_layers": 2}
