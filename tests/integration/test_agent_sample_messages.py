"""The agent drains a queue holding what the replaced sample published: its bare v1alpha2 task objects
and its v1alpha1 legacy messages, SNS-enveloped (its subscriptions were not raw) and raw.

moto over HTTP, the real agent in process, a fake AUTOMATIC1111 over HTTP. Our own fixtures always run;
the sample's own files too when the workspace has them.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.agent_fakes.a1111 import FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES

pytestmark = pytest.mark.timeout(180)


def _messages(root: Path, version: str, delivery: str) -> list[Path]:
    return sorted((root / "queue-messages").glob(f"{version}-*.{delivery}.json"))


def _inner(body: str) -> dict:
    data = json.loads(body)
    return json.loads(data["Message"]) if data.get("Type") == "Notification" else data


def _expected(message: dict) -> str:
    """What must become of a message: inline or s3 images complete; pipelines need ComfyUI (this is a webui
    runtime); a public https image cannot be fetched here (no internet), which must fail, clearly."""
    if message["metadata"]["tasktype"] == "pipeline":
        return "failed"
    return "failed" if "https://" in json.dumps(message["content"]) else "completed"


SOURCES = [pytest.param(TEST_FIXTURES, id="own")]
if SHARED_FIXTURES.exists():
    SOURCES.append(pytest.param(SHARED_FIXTURES, id="sample"))


@pytest.mark.parametrize("delivery", ["sns", "raw"])
@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2"])
@pytest.mark.parametrize("root", SOURCES)
async def test_agent_drains_the_sample_queue(
    world: AgentWorld, a1111: FakeA1111, root: Path, version: str, delivery: str
) -> None:
    files = _messages(root, version, delivery)
    assert files, f"no {version} {delivery} messages under {root}"
    bodies = [p.read_text() for p in files]
    expected = {_inner(b)["metadata"]["id"]: _expected(_inner(b)) for b in bodies}
    for body in bodies:
        world.send_raw(body)

    async with running_agent(world.agent_env(a1111.base_url)):
        notes = await world.await_notifications(len(bodies), timeout=60)

    # Every job ends once, with the outcome its content calls for.
    assert Counter(n["id"] for n in notes) == Counter(list(expected))
    for note in notes:
        want = expected[note["id"]]
        assert note["status"] == want, note
        assert note["runtime"] == "sdruntime" and note["_attributes"]["runtime"] == "sdruntime"
        if want == "completed":
            assert note["image_url"] and note["error"] is None
            record = world.status(note["id"])
            assert record is not None and record["status"] == "completed"
        else:
            assert note["error"]["message"], note
    assert world.queue_counts() == (0, 0)
    assert world.dlq_bodies() == []
    # The runtime saw no routing key of the sample and got the v1alpha1 image link as the init image.
    for call in a1111.finished_calls(200):
        scripts = call.payload.get("alwayson_scripts") or {}
        assert not {"task", "id_task", "sd_model_checkpoint", "save_dir", "image_link"} & scripts.keys()
        assert "s3_output_path" not in call.payload
        if call.endpoint == "img2img":
            assert base64.b64decode(call.payload["init_images"][0]).startswith(b"\x89PNG")


async def test_pipeline_failure_names_the_runtime_type(world: AgentWorld, a1111: FakeA1111) -> None:
    world.send_raw((TEST_FIXTURES / "queue-messages" / "v1alpha2-pipeline.sns.json").read_text())
    async with running_agent(world.agent_env(a1111.base_url)):
        (note,) = await world.await_notifications(1)
    assert note["status"] == "failed" and "comfyui" in note["error"]["message"]


async def test_legacy_checkpoint_is_switched_to_with_dynamic_models(world: AgentWorld, a1111: FakeA1111) -> None:
    message = _inner((TEST_FIXTURES / "queue-messages" / "v1alpha1-t2i.sns.json").read_text())
    message["content"]["alwayson_scripts"]["sd_model_checkpoint"] = "model-b.safetensors"
    envelope = {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(message)}
    world.send_raw(json.dumps(envelope))
    async with running_agent(world.agent_env(a1111.base_url, DYNAMIC_SD_MODEL="true")):
        (note,) = await world.await_notifications(1)
    assert note["status"] == "completed", note
    assert a1111.options["sd_model_checkpoint"].startswith("model-b")
    (call,) = [c for c in a1111.finished_calls(200) if c.endpoint == "txt2img"]
    # The checkpoint switched the model; it does not ride along as a per-request override.
    assert "sd_model_checkpoint" not in (call.payload.get("override_settings") or {})


def _completable(root: Path) -> list[Path]:
    """Messages that can complete here: no pipeline (needs ComfyUI), no public https image (no internet)."""
    return [
        p for p in sorted((root / "queue-messages").glob("*.json")) if _expected(_inner(p.read_text())) == "completed"
    ]


async def test_a_mixed_queue_of_sample_messages_completes_each_job_once(world: AgentWorld, a1111: FakeA1111) -> None:
    # One queue holding both versions, enveloped and raw, as an old queue mid-migration would.
    roots = [TEST_FIXTURES, *([SHARED_FIXTURES] if SHARED_FIXTURES.exists() else [])]
    files = [p for root in roots for p in _completable(root)]
    assert len(files) >= 8
    ids = []
    for n, path in enumerate(files):
        data = json.loads(path.read_text())
        inner = _inner(path.read_text())
        task_id = f"mixed-{n}"
        inner["metadata"]["id"] = task_id
        body = {**data, "Message": json.dumps(inner)} if data.get("Type") == "Notification" else inner
        world.send_raw(json.dumps(body))
        ids.append(task_id)

    async with running_agent(world.agent_env(a1111.base_url)):
        await world.await_notifications(len(ids), timeout=60)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 30, what="queue empty")

    notes = world.notifications()
    assert Counter(n["id"] for n in notes) == Counter(ids)
    assert all(n["status"] == "completed" and n["image_url"] for n in notes), notes
    for task_id in ids:
        record = world.status(task_id)
        assert record is not None and record["status"] == "completed" and int(record["attempts"]) == 1
    assert world.dlq_bodies() == []
