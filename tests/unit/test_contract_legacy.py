"""Every shape the replaced sample put on a queue or took at POST /v1alpha1, ours and its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract import ContractError, TaskType, parse_queue_body
from contract.legacy import LEGACY_RUNTIME, ROUTING_KEYS, parse_legacy_request, to_runtime_content
from tests.conftest import SHARED_FIXTURES, TEST_FIXTURES


def _files(folder: str) -> list[Path]:
    own = sorted((TEST_FIXTURES / folder).glob("*.json"))
    shared = sorted((SHARED_FIXTURES / folder).glob("*.json")) if SHARED_FIXTURES.exists() else []
    return own + shared


def _ids(path: Path) -> str:
    return f"{'own' if TEST_FIXTURES in path.parents else 'sample'}/{path.name}"


MESSAGES = _files("queue-messages")
REQUESTS_V1 = _files("requests-v1alpha1")


def _inner(path: Path) -> dict:
    data = json.loads(path.read_text())
    return json.loads(data["Message"]) if data.get("Type") == "Notification" else data


@pytest.mark.parametrize("path", MESSAGES, ids=_ids)
def test_every_queue_message_of_the_sample_parses(path: Path) -> None:
    sent = _inner(path)
    message = parse_queue_body(path.read_text(), legacy_runtime="sdruntime")
    meta = sent["metadata"]
    assert message.id == meta["id"] and message.tasktype == TaskType(meta["tasktype"])
    assert message.prefix == meta["prefix"]
    # A v1alpha1 message belongs to the queue it arrived on; a v1alpha2 one names its runtime.
    assert message.runtime == "sdruntime"
    if meta["runtime"] == LEGACY_RUNTIME:
        scripts = sent["content"]["alwayson_scripts"]
        assert message.checkpoint == scripts["sd_model_checkpoint"] == message.sd_model_checkpoint
        assert not ROUTING_KEYS & message.content["alwayson_scripts"].keys()
        assert "s3_output_path" not in message.content
        if "image_link" in scripts:
            assert message.content["init_images"] == [scripts["image_link"]]
        attributes = message.message_attributes()
        assert attributes["sd_model_checkpoint"]["StringValue"] == scripts["sd_model_checkpoint"]
    else:
        assert message.content == sent["content"] and message.checkpoint is None
    # What the agent makes of it round-trips as our own message.
    assert parse_queue_body(message.model_dump_json()) == message


@pytest.mark.parametrize("folder", ["queue-messages"])
def test_own_messages_cover_every_shape_of_the_sample(folder: str) -> None:
    names = {p.name for p in (TEST_FIXTURES / folder).glob("*.json")}
    for version, kinds in (
        ("v1alpha1", ["t2i", "i2i"]),
        ("v1alpha2", ["t2i", "i2i", "extra-single-image", "pipeline"]),
    ):
        for kind in kinds:
            assert {f"{version}-{kind}.raw.json", f"{version}-{kind}.sns.json"} <= names


def test_legacy_message_without_the_agent_runtime_keeps_the_legacy_name() -> None:
    body = (TEST_FIXTURES / "queue-messages" / "v1alpha1-t2i.raw.json").read_text()
    assert parse_queue_body(body).runtime == LEGACY_RUNTIME


@pytest.mark.parametrize("path", REQUESTS_V1, ids=_ids)
def test_v1alpha1_requests(path: Path) -> None:
    body = json.loads(path.read_text())
    scripts = body["alwayson_scripts"]
    # The sample's AnimateDiff payload asks for 32 frames in one batch: a video's frame count, accepted.
    task = parse_legacy_request(path.read_bytes())
    assert task.id == scripts["id_task"] and task.tasktype == TaskType(scripts["task"])
    assert task.prefix == scripts["save_dir"] and task.checkpoint == scripts["sd_model_checkpoint"]
    assert not ROUTING_KEYS & task.content["alwayson_scripts"].keys()
    # Scripts that are not routing reach the runtime unchanged.
    others = {k: v for k, v in scripts.items() if k not in ROUTING_KEYS}
    assert task.content["alwayson_scripts"] == others
    assert body["alwayson_scripts"] == scripts  # the caller's body is not modified


@pytest.mark.parametrize(
    ("animatediff", "batch_size", "accepted"),
    [(True, 64, True), (True, 65, False), (False, 8, True), (False, 9, False)],
)
def test_v1alpha1_batch_size_is_frames_for_a_video_and_images_otherwise(
    animatediff: bool, batch_size: int, accepted: bool
) -> None:
    body = json.loads((TEST_FIXTURES / "requests-v1alpha1" / "t2v.json").read_text())
    body["batch_size"] = batch_size
    if not animatediff:
        del body["alwayson_scripts"]["AnimateDiff"]
    if accepted:
        assert parse_legacy_request(json.dumps(body).encode()).content["batch_size"] == batch_size
        return
    with pytest.raises(ContractError) as err:
        parse_legacy_request(json.dumps(body).encode())
    assert [i.field for i in err.value.issues] == ["batch_size"]


def test_content_handling_matches_the_sample_agent() -> None:
    payload = {
        "prompt": "p",
        "override_settings": {"CLIP_stop_at_last_layers": 2, "sd_vae": "a.vae"},
        "alwayson_scripts": {
            "task": "image-to-image",
            "id_task": "t",
            "uid": "u",
            "sd_model_checkpoint": "m.safetensors",
            "save_dir": "outputs",
            "sd_vae": "b.vae",
            "image_link": "s3://bucket/cat.png",
            "override_settings": {"sd_vae": "c.vae", "eta_noise_seed_delta": 31337},
            "ControlNet": {"args": [{"enabled": True}]},
        },
    }
    content = to_runtime_content(payload)
    assert content["alwayson_scripts"] == {"ControlNet": {"args": [{"enabled": True}]}}
    assert content["override_settings"] == {
        "CLIP_stop_at_last_layers": 2,
        "sd_vae": "c.vae",
        "eta_noise_seed_delta": 31337,
    }
    assert content["init_images"] == ["s3://bucket/cat.png"]
    assert payload["alwayson_scripts"]["task"] == "image-to-image"


def test_v1alpha1_errors_name_every_field_as_the_client_wrote_it() -> None:
    body = {
        "alwayson_scripts": {
            "task": "pipeline",
            "id_task": "bad id!",
            "save_dir": "../up",
            "image_link": "ftp://x/y.png",
        },
        "steps": 0,
        "width": 7,
    }
    with pytest.raises(ContractError) as err:
        parse_legacy_request(json.dumps(body))
    fields = {i.field for i in err.value.issues}
    assert {
        "alwayson_scripts.task",
        "alwayson_scripts.sd_model_checkpoint",
        "alwayson_scripts.id_task",
        "alwayson_scripts.save_dir",
    } <= fields
    task_issue = next(i for i in err.value.issues if i.field == "alwayson_scripts.task")
    assert "/v1alpha2" in task_issue.message
    body["alwayson_scripts"] = {"task": "image-to-image", "sd_model_checkpoint": "m", "image_link": "ftp://x/y.png"}
    with pytest.raises(ContractError) as err:
        parse_legacy_request(json.dumps(body))
    assert {i.field for i in err.value.issues} == {"alwayson_scripts.image_link", "steps", "width"}


@pytest.mark.parametrize("body", [{}, {"alwayson_scripts": []}, [], {"alwayson_scripts": {"task": "text-to-image"}}])
def test_v1alpha1_without_routing_is_refused(body: object) -> None:
    with pytest.raises(ContractError) as err:
        parse_legacy_request(json.dumps(body))
    assert err.value.issues[0].field in {"(body)", "alwayson_scripts", "alwayson_scripts.sd_model_checkpoint"}


def test_v1alpha1_without_id_gets_one() -> None:
    task = parse_legacy_request({"alwayson_scripts": {"task": "text-to-image", "sd_model_checkpoint": "m"}})
    assert task.id and task.prefix == "outputs"


def test_bad_legacy_message_names_content_fields() -> None:
    body = json.dumps(
        {
            "metadata": {"id": "x", "runtime": "legacy", "tasktype": "text-to-image", "prefix": "outputs"},
            "content": {"alwayson_scripts": {"task": "text-to-image"}, "steps": -1},
        }
    )
    with pytest.raises(ContractError) as err:
        parse_queue_body(body, legacy_runtime="r")
    assert {i.field for i in err.value.issues} == {"content.alwayson_scripts.sd_model_checkpoint", "content.steps"}
